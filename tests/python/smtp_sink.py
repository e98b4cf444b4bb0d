"""An SMTP server on loopback that keeps what it receives, for
reporter/tests/weekly_mail.rs.

Usage: smtp_sink.py DIR

Listens on 127.0.0.1 on a port the system picks and prints `PORT <n>` on
stdout once it accepts connections. Each message received is written to DIR
as `<n>.eml` (the raw data, as the client sent it) and `<n>.rcpt` (the
envelope recipients, one a line), renamed into place only when complete and
before the server answers 250, so a client whose send succeeded finds them.
Recipients whose address starts with `refused` are refused for good (550).
Exits when stdin closes (the test ended) or on SIGTERM.
"""

import asyncio
import os
import signal
import socket
import sys

from aiosmtpd.smtp import SMTP


class Keep:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    def _write(self, name, data):
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(self.directory, name))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # A permanent refusal on demand, for the test that it is not retried.
        if address.startswith("refused"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        rcpt = "".join(r + "\n" for r in envelope.rcpt_tos).encode()
        # Recipients first: a reader keys on the .eml file.
        self._write(f"{self.count}.rcpt", rcpt)
        self._write(f"{self.count}.eml", envelope.original_content)
        return "250 OK"


async def main(directory):
    os.makedirs(directory, exist_ok=True)
    handler = Keep(directory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.localhost", data_size_limit=10 << 20),
        sock=sock,
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def stdin_readable():
        if not os.read(sys.stdin.fileno(), 4096):
            stop.set()

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: smtp_sink.py DIR")
    asyncio.run(main(sys.argv[1]))
