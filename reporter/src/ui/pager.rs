//! Long lists a page at a time: the overview's services and features, the
//! error groups (of the errors page and of a transaction's) and the
//! regressions page's rows show at most
//! `rows` (default [`PAGE_ROWS`]) rows, say "Showing 51–100 of 2,000
//! services", and link to the previous and next pages; the filters narrow
//! the list. Thousands of services once made a 180 MB overview.

use maud::{html, Markup};

use super::{PageError, Params};
use crate::format;

/// Rows a list shows when `rows` is not given.
pub(crate) const PAGE_ROWS: usize = 50;
/// The most rows `rows` may ask for.
const MAX_PAGE_ROWS: usize = 500;

/// Which rows of a list of `total` a page shows, read from its query:
/// `rows` and the list's own offset key.
pub(crate) struct Pager<'a> {
    params: &'a Params,
    path: &'a str,
    /// The list's offset parameter (one per list, so each pages alone).
    key: &'static str,
    /// What the rows are, plural ("services").
    noun: &'static str,
    from: usize,
    size: usize,
    total: usize,
}

impl<'a> Pager<'a> {
    /// The page of a list of `total` rows at `path` that `params` asks for;
    /// an offset past the end shows the last page.
    pub(crate) fn new(
        params: &'a Params,
        path: &'a str,
        key: &'static str,
        noun: &'static str,
        total: usize,
    ) -> Result<Pager<'a>, PageError> {
        let number = |key: &str, default: usize, range: std::ops::RangeInclusive<usize>| match params.get(key) {
            None => Ok(default),
            Some(text) => text.parse::<usize>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                PageError::BadRequest(format!(
                    "{key}={text} is not a number from {} to {}",
                    range.start(),
                    range.end()
                ))
            }),
        };
        let size = number("rows", PAGE_ROWS, 1..=MAX_PAGE_ROWS)?;
        let from = number(key, 0, 0..=usize::MAX)?;
        let last_page = total.saturating_sub(1) / size * size;
        Ok(Pager {
            params,
            path,
            key,
            noun,
            from: from.min(last_page),
            size,
            total,
        })
    }

    /// The indexes of the rows shown.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.from..(self.from + self.size).min(self.total)
    }

    /// The rows of `all` shown.
    pub(crate) fn page<'r, T>(&self, all: &'r [T]) -> &'r [T] {
        let range = self.range();
        &all[range.start.min(all.len())..range.end.min(all.len())]
    }

    /// "Showing 1–50 of 2,000 services", with links to the pages before
    /// and after; nothing when every row shows.
    pub(crate) fn nav(&self) -> Markup {
        let range = self.range();
        let at = |from: usize| {
            let from = (from > 0).then(|| from.to_string());
            self.params.with(self.key, from.as_deref()).href(self.path)
        };
        html! {
            @if self.total > self.size || self.from > 0 {
                p.pager {
                    "Showing " (format::count(range.start as u64 + 1)) "–" (format::count(range.end as u64))
                    " of " (format::count(self.total as u64)) " " (self.noun)
                    @if self.from > 0 { " · " a rel="prev" href=(at(self.from.saturating_sub(self.size))) { "‹ Previous" } }
                    @if range.end < self.total { " · " a rel="next" href=(at(range.end)) { "Next " (self.size) " ›" } }
                    " · the filters above narrow the list"
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pager(query: &str, total: usize) -> String {
        let params = Params::parse(Some(query)).unwrap();
        let pager = Pager::new(&params, "/", "services_from", "services", total).unwrap();
        format!("{:?} {}", pager.range(), pager.nav().into_string())
    }

    #[test]
    fn pages_say_where_they_are_and_link_to_their_neighbours() {
        let first = pager("since=1h", 2_000);
        assert!(first.starts_with("0..50 "), "{first}");
        assert!(first.contains("Showing 1–50 of 2,000 services"), "{first}");
        assert!(first.contains("href=\"/?since=1h&amp;services_from=50\""), "{first}");
        assert!(!first.contains("Previous"));
        let middle = pager("since=1h&services_from=50&rows=100", 2_000);
        assert!(middle.contains("Showing 51–150 of 2,000"), "{middle}");
        assert!(
            middle.contains("href=\"/?since=1h&amp;rows=100\"") && middle.contains("Next 100"),
            "{middle}"
        );
        // Past the end: the last page.
        let last = pager("services_from=999999", 2_000);
        assert!(last.starts_with("1950..2000 ") && !last.contains("Next"), "{last}");
        // A short list: no pager.
        assert_eq!(pager("", 3), "0..3 ");
        let params = Params::parse(Some("rows=0")).unwrap();
        assert!(Pager::new(&params, "/", "from", "groups", 10).is_err());
    }
}
