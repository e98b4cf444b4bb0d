//! A report that goes out after its time says so: one mark in the subject
//! and one sentence at the top of the body (email and chat), saying what it
//! covers, when it was due and why it is late.

use serde::Serialize;

/// Why a report is late, shown with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Late {
    /// What the report covers, e.g. `the week of 2026-11-23`.
    pub covers: String,
    /// When it was due, e.g. `Mon 2026-11-30 09:00 CET`.
    pub due: String,
    /// Why it is late, e.g. `the reporter was not running then`.
    pub reason: String,
}

impl Late {
    /// `Late: this report for … was due …; <reason>.`
    pub(crate) fn sentence(&self) -> String {
        format!(
            "Late: this report for {} was due {}; {}.",
            self.covers, self.due, self.reason
        )
    }
}

/// `subject`, marked `[late]` in front when `late` is set.
pub(crate) fn subject(late: Option<&Late>, subject: String) -> String {
    match late {
        Some(_) => format!("[late] {subject}"),
        None => subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_report_says_what_it_covers_when_it_was_due_and_why() {
        let late = Late {
            covers: "the week of 2026-11-23".into(),
            due: "Mon 2026-11-30 09:00 CET".into(),
            reason: "the reporter was not running then".into(),
        };
        assert_eq!(
            late.sentence(),
            "Late: this report for the week of 2026-11-23 was due Mon 2026-11-30 09:00 CET; \
             the reporter was not running then."
        );
        assert_eq!(subject(Some(&late), "Weekly".into()), "[late] Weekly");
        assert_eq!(subject(None, "Weekly".into()), "Weekly");
    }
}
