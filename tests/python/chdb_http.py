"""The part of ClickHouse's HTTP interface that Kuroko's ClickHouse store
uses, served by chDB (PyPI's `chdb-core`, which embeds a current
ClickHouse engine), so that reporter/tests/support/clickhouse_server.rs can
run the ClickHouse tests against a current engine as well as against
Debian's clickhouse-server 18.16 (`KUROKO_TEST_CLICKHOUSE=chdb`).

Usage: chdb_http.py --path DIR [--port N]

Keeps its databases in DIR (one persistent chDB session) and listens on
127.0.0.1:N (0, the default: a port the system picks); prints `PORT <n>`
on stdout once it accepts connections. Exits on SIGTERM or SIGINT.

What it imitates, as ClickHouse's HTTP handler does it:

- `GET /ping` (and `GET /` with no query) answer `Ok.`;
- the statement is the `query` URL parameter, then a newline, then the
  request body (so an INSERT's rows can follow `INSERT ... FORMAT
  JSONEachRow` in the body); the output format is TabSeparated unless
  the statement names one;
- `database` is the current database (`default` when absent);
- every other URL parameter is a setting, set for that statement only
  (`output_format_json_quote_64bit_integers`, `insert_deduplication_token`,
  ...); an unknown one is refused with ClickHouse's own error, as the
  server does, except the parameters the real server's HTTP handler takes
  itself (`wait_end_of_query`, `query_id`, `user`, ...), which are ignored;
- a failed statement answers ClickHouse's error text (`Code: N.
  DB::Exception: ...`) with the status the server would give (400 for
  syntax and parsing errors, 404 for unknown tables and databases, 500
  otherwise) and the `X-ClickHouse-Exception-Code` header.

Statements run one at a time (one session, whose current database and
settings are session state; a `SET` statement sent on its own lasts until
a later statement names that setting, unlike on a server). No
authentication: any user is accepted. Not a server for anything but tests.

With `CHDB_HTTP_LOG=FILE` in its environment it appends one JSON line per
statement to FILE (database, settings, the statement's first 20,000
characters, milliseconds waited for the session and run): the statements
a test run sent, to replay elsewhere or to see where the time goes.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb.session import Session

# URL parameters the real server's HTTP handler takes itself: not settings.
HTTP_PARAMETERS = {
    "query",
    "database",
    "default_format",
    "user",
    "password",
    "quota_key",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "compress",
    "decompress",
    "buffer_size",
    "wait_end_of_query",
    "stacktrace",
}

# ClickHouse's error codes the HTTP handler answers other than 500 with.
BAD_REQUEST = {
    6,  # CANNOT_PARSE_TEXT
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    62,  # SYNTAX_ERROR
    69,  # ARGUMENT_OUT_OF_BOUND
    72,  # CANNOT_PARSE_NUMBER
    115,  # UNKNOWN_SETTING
    117,  # INCORRECT_DATA
}
NOT_FOUND = {60, 81}  # UNKNOWN_TABLE, UNKNOWN_DATABASE

SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def literal(value):
    """`value` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chDB session, used by one statement at a time.

    The session's current database and settings are what the last
    statement needed; a statement changes only what differs (each `USE` or
    `SET` costs about a millisecond), and settings that the statement does
    not name go back to their defaults, so no statement sees another's.
    """

    def __init__(self, path, log=None):
        self.session = Session(path)
        self.lock = threading.Lock()
        self.log = open(log, "a", encoding="utf-8") if log else None
        self.database = None
        self.settings = {}

    def run(self, database, settings, sql):
        """Runs `sql` in `database` with `settings`; its output, as bytes."""
        waited = time.monotonic()
        with self.lock:
            started = time.monotonic()
            try:
                return self.run_locked(database, settings, sql)
            finally:
                if self.log:
                    done = time.monotonic()
                    line = {
                        "wait_ms": round((started - waited) * 1e3, 1),
                        "run_ms": round((done - started) * 1e3, 1),
                        "database": database,
                        "settings": settings,
                        "sql": sql[:20000],
                    }
                    self.log.write(json.dumps(line) + "\n")
                    self.log.flush()

    def execute(self, sql):
        return self.session.query(sql, "TabSeparated").bytes()

    def run_locked(self, database, settings, sql):
        if database != self.database:
            self.database = None
            self.execute(f"USE {quote_identifier(database)}")
            self.database = database
        wanted = dict(settings)
        for name in list(self.settings):
            if name not in wanted:
                del self.settings[name]
                self.execute(f"SET {name} = DEFAULT")
        for name, value in wanted.items():
            if self.settings.get(name) != value:
                if not SETTING_NAME.match(name):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
                self.settings.pop(name, None)
                self.execute(f"SET {name} = {literal(value)}")
                # Set, and taken back when a later statement does not name it.
                self.settings[name] = value
        if re.match(r"\s*(USE|SET)\b", sql, re.IGNORECASE):
            # The statement changes the session itself: nothing is known.
            self.database = None
        return self.execute(sql)


def quote_identifier(name):
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def error_code(message):
    found = re.search(r"Code: (\d+)", message)
    return int(found.group(1)) if found else 1002  # UNKNOWN_EXCEPTION


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go in separate writes: without this, Nagle's
    # algorithm and the client's delayed ACK add ~40 ms to each answer.
    disable_nagle_algorithm = True
    engine = None  # set in main

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def do_GET(self):
        self.handle_query(b"")

    def do_POST(self):
        self.handle_query(self.read_body())

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def handle_query(self, body):
        url = urlsplit(self.path)
        parameters = parse_qsl(url.query, keep_blank_values=True)
        query = dict(parameters).get("query", "")
        if url.path == "/ping" or (url.path == "/" and not query and not body):
            self.answer(200, b"Ok.\n")
            return
        if url.path != "/":
            self.answer(404, b"There is no handle " + url.path.encode() + b"\n")
            return
        database = dict(parameters).get("database") or "default"
        settings = [(name, value) for name, value in parameters if name not in HTTP_PARAMETERS]
        sql = query + "\n" + body.decode("utf-8", "surrogateescape") if query else body.decode("utf-8", "surrogateescape")
        try:
            output = self.engine.run(database, settings, sql)
        except Exception as e:  # noqa: BLE001 - chDB raises ChdbError, RuntimeError or ValueError
            message = str(e).strip()
            code = error_code(message)
            status = 400 if code in BAD_REQUEST else 404 if code in NOT_FOUND else 500
            self.answer(
                status,
                (message + "\n").encode("utf-8", "surrogateescape"),
                [("X-ClickHouse-Exception-Code", str(code))],
            )
            return
        self.answer(200, output)


class Server(ThreadingHTTPServer):
    # Many clients connect at once, as to a real server (the default backlog
    # of 5 resets connections).
    request_queue_size = 1024
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", required=True, help="where chDB keeps its databases")
    parser.add_argument("--port", type=int, default=0, help="the loopback port (0: any free one)")
    arguments = parser.parse_args()
    Handler.engine = Engine(arguments.path, os.environ.get("CHDB_HTTP_LOG"))
    server = Server(("127.0.0.1", arguments.port), Handler)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    Handler.engine.session.close()


if __name__ == "__main__":
    sys.exit(main())
