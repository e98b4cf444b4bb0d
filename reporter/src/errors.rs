//! An error and its causes as one line, for logs, API answers and reports.

/// `error: cause: cause…`, each cause once: one whose text the line already
/// holds (an error that prints its source itself) is not repeated.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the store")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("reading the store: {0}")]
    struct SaysItsSource(#[source] std::io::Error);

    #[test]
    fn causes_follow_once_each() {
        let io = || std::io::Error::other("disk full");
        assert_eq!(chain(&Outer(io())), "reading the store: disk full");
        assert_eq!(chain(&SaysItsSource(io())), "reading the store: disk full");
    }
}
