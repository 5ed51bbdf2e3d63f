//! The overseer, pure: the time of day it runs (`[overseer]
//! schedule`), when it fires next, whether a review is owed (a daemon that
//! was down at the scheduled time reviews once when it starts), and the
//! proposals a review left waiting for a human.
//!
//! Times are wall-clock times in a time zone the caller picks (the daemon:
//! the local one), so a test can use a fixed offset.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone};
use serde::{Deserialize, Serialize};

use super::RunId;

/// A time of day, `HH:MM` (00:00 to 23:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DailyTime {
    hour: u8,
    minute: u8,
}

impl DailyTime {
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self { hour, minute })
    }

    fn naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.hour.into(), self.minute.into(), 0).unwrap_or(NaiveTime::MIN)
    }

    /// This time on `date` in `tz`. A time the clocks skip (the hour lost to
    /// daylight saving) is taken as the first minute after the gap; a time
    /// they pass twice, as the first of the two.
    fn on<Tz: TimeZone>(self, date: NaiveDate, tz: &Tz) -> Option<DateTime<Tz>> {
        let local: NaiveDateTime = date.and_time(self.naive());
        (0..=24 * 60).find_map(|minutes| {
            tz.from_local_datetime(&(local + TimeDelta::minutes(minutes)))
                .earliest()
        })
    }
}

impl fmt::Display for DailyTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl FromStr for DailyTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{s:?} is not a time of day; use HH:MM, 00:00 to 23:59 (e.g. \"02:00\")");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let two_digits = |part: &str| {
            (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u8>().ok())
                .flatten()
        };
        let (hour, minute) = two_digits(h).zip(two_digits(m)).ok_or_else(bad)?;
        Self::new(hour, minute).ok_or_else(bad)
    }
}

impl TryFrom<String> for DailyTime {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DailyTime> for String {
    fn from(time: DailyTime) -> Self {
        time.to_string()
    }
}

/// The first firing strictly after `now`: today's if still ahead, else
/// tomorrow's.
pub fn next_firing<Tz: TimeZone>(at: DailyTime, now: &DateTime<Tz>) -> DateTime<Tz> {
    let today = now.date_naive();
    (0..=2)
        .filter_map(|days| today.checked_add_days(Days::new(days)))
        .filter_map(|date| at.on(date, &now.timezone()))
        .find(|firing| firing > now)
        // Unreachable for real time zones: a day later is always ahead.
        .unwrap_or_else(|| now.clone() + TimeDelta::days(1))
}

/// The last firing at or before `now`: today's if already passed, else
/// yesterday's.
pub fn last_firing<Tz: TimeZone>(at: DailyTime, now: &DateTime<Tz>) -> DateTime<Tz> {
    let today = now.date_naive();
    (0..=2)
        .filter_map(|days| today.checked_sub_days(Days::new(days)))
        .filter_map(|date| at.on(date, &now.timezone()))
        .find(|firing| firing <= now)
        .unwrap_or_else(|| now.clone() - TimeDelta::days(1))
}

/// The firing a review is owed for, if any: the last one at or before
/// `now`, when it came after `since_ms` (the last review, or when the
/// repository was registered). At most one, however many were missed.
pub fn owed<Tz: TimeZone>(
    at: DailyTime,
    since_ms: u64,
    now: &DateTime<Tz>,
) -> Option<DateTime<Tz>> {
    let firing = last_firing(at, now);
    (firing.timestamp_millis() > i64::try_from(since_ms).unwrap_or(i64::MAX)).then_some(firing)
}

/// One proposal of a report that no human decided yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenProposal {
    /// 1-based, as `memofab overseer apply REPORT N` takes it.
    pub number: u32,
    pub title: String,
}

/// The newest overseer report's proposals still waiting for a decision:
/// one item in the cockpit's inbox, one line in `memofab queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingProposals {
    pub report: RunId,
    /// When the report was made (unix ms).
    pub reported_ms: u64,
    /// Never empty.
    pub open: Vec<OpenProposal>,
}

impl WaitingProposals {
    /// The command that reviews them.
    pub fn command(&self) -> String {
        format!("memofab overseer review {}", self.report)
    }

    /// `2 proposals: Cite the test; Never repeat a failing command`.
    pub fn summary(&self) -> String {
        let titles: Vec<&str> = self.open.iter().map(|p| p.title.as_str()).collect();
        let n = self.open.len();
        format!(
            "{n} proposal{}: {}",
            if n == 1 { "" } else { "s" },
            titles.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn at(s: &str) -> DailyTime {
        s.parse().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn times_of_day_parse_as_hh_mm_only() {
        assert_eq!(at("02:00"), DailyTime::new(2, 0).unwrap());
        assert_eq!(at("23:59").to_string(), "23:59");
        assert_eq!(at("00:00").to_string(), "00:00");
        for bad in [
            "24:00", "12:60", "2:00", "02:0", "0200", "02:00:00", "ab:cd", "", "-1:00",
        ] {
            assert!(bad.parse::<DailyTime>().is_err(), "{bad:?} parsed");
        }
        let json = serde_json::to_string(&at("07:05")).unwrap();
        assert_eq!(json, "\"07:05\"");
        assert_eq!(
            serde_json::from_str::<DailyTime>(&json).unwrap(),
            at("07:05")
        );
        assert!(serde_json::from_str::<DailyTime>("\"7:5\"").is_err());
    }

    #[test]
    fn a_time_still_ahead_fires_today() {
        let now = utc("2026-03-10T01:30:00Z");
        assert_eq!(next_firing(at("02:00"), &now), utc("2026-03-10T02:00:00Z"));
        assert_eq!(last_firing(at("02:00"), &now), utc("2026-03-09T02:00:00Z"));
    }

    #[test]
    fn a_time_already_passed_today_fires_tomorrow() {
        let now = utc("2026-03-10T09:15:00Z");
        assert_eq!(next_firing(at("02:00"), &now), utc("2026-03-11T02:00:00Z"));
        assert_eq!(last_firing(at("02:00"), &now), utc("2026-03-10T02:00:00Z"));
        // Exactly at the time: that firing is the last one, the next is tomorrow.
        let on_time = utc("2026-03-10T02:00:00Z");
        assert_eq!(
            next_firing(at("02:00"), &on_time),
            utc("2026-03-11T02:00:00Z")
        );
        assert_eq!(last_firing(at("02:00"), &on_time), on_time);
    }

    #[test]
    fn firings_cross_midnight_and_month_ends() {
        let now = utc("2026-02-28T23:50:00Z");
        assert_eq!(next_firing(at("00:10"), &now), utc("2026-03-01T00:10:00Z"));
        assert_eq!(next_firing(at("23:55"), &now), utc("2026-02-28T23:55:00Z"));
        let new_year = utc("2026-12-31T23:59:30Z");
        assert_eq!(
            next_firing(at("00:00"), &new_year),
            utc("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn the_local_wall_clock_decides_not_utc() {
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        // 23:30 UTC is 01:30 the next day at +02:00.
        let now = utc("2026-06-01T23:30:00Z").with_timezone(&tz);
        let next = next_firing(at("02:00"), &now);
        assert_eq!(next.naive_local().to_string(), "2026-06-02 02:00:00");
        assert_eq!(next.with_timezone(&Utc), utc("2026-06-02T00:00:00Z"));
    }

    #[test]
    fn one_review_is_owed_however_many_firings_were_missed() {
        let schedule = at("02:00");
        let ms = |s: &str| utc(s).timestamp_millis() as u64;
        // Reviewed at 02:00:05 today: nothing owed until tomorrow's firing.
        let reviewed = ms("2026-03-10T02:00:05Z");
        assert_eq!(owed(schedule, reviewed, &utc("2026-03-10T09:00:00Z")), None);
        assert_eq!(
            owed(schedule, reviewed, &utc("2026-03-11T02:00:00Z")),
            Some(utc("2026-03-11T02:00:00Z"))
        );
        // Down for three nights: one review when it starts, for the last firing.
        assert_eq!(
            owed(schedule, reviewed, &utc("2026-03-13T08:00:00Z")),
            Some(utc("2026-03-13T02:00:00Z"))
        );
        // Registered after today's firing: nothing owed yet.
        let registered = ms("2026-03-10T03:00:00Z");
        assert_eq!(
            owed(schedule, registered, &utc("2026-03-10T09:00:00Z")),
            None
        );
    }

    #[test]
    fn waiting_proposals_read_as_one_line() {
        let waiting = WaitingProposals {
            report: RunId::new("o-1"),
            reported_ms: 0,
            open: vec![
                OpenProposal {
                    number: 1,
                    title: "Cite the test".into(),
                },
                OpenProposal {
                    number: 3,
                    title: "Stop repeating".into(),
                },
            ],
        };
        assert_eq!(
            waiting.summary(),
            "2 proposals: Cite the test; Stop repeating"
        );
        assert_eq!(waiting.command(), "memofab overseer review o-1");
    }
}
