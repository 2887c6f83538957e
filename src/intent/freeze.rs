//! Freeze windows: absolute (`start`/`end`) or weekly in a time zone
//! (`weekly = "sat 00:00-24:00"`, `timezone = "Europe/Berlin"`), and when one is in force.
//! Weekly windows are civil times: "sat 00:00" is midnight in Berlin in summer and in
//! winter alike, whatever the offset from UTC that day.

use std::time::SystemTime;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::selector::Selector;

/// A window in which nothing may be rolled out to the matching environments.
#[derive(Debug, Clone)]
pub struct Freeze {
    pub name: String,
    pub window: Window,
    pub select: Selector,
}

/// When a freeze is in force.
#[derive(Debug, Clone)]
pub enum Window {
    /// Once, from `start` to `end`.
    Between { start: SystemTime, end: SystemTime },
    /// Every week.
    Weekly(Weekly),
}

/// A weekly window: starting on each of `days` at `from`, lasting until `to` on the day
/// `days_later` after, in `tz`.
#[derive(Debug, Clone)]
pub struct Weekly {
    /// As written (`sat 00:00-24:00`), for messages.
    pub text: String,
    pub days: Vec<Weekday>,
    pub from: Time,
    pub days_later: i8,
    pub to: Time,
    pub tz: TimeZone,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const WEEKLY_HELP: &str = "write DAYS HH:MM-[DAY ]HH:MM, e.g. \"sat 00:00-24:00\", \"sat,sun 00:00-24:00\", \"mon-fri 22:00-06:00\" or \"fri 18:00-mon 06:00\"";

impl Weekly {
    /// Parses `weekly` in time zone `tz` (an IANA name; None: UTC). Errors say what is
    /// wrong and how to write it.
    pub fn parse(weekly: &str, tz: Option<&str>) -> Result<Weekly, (String, String)> {
        let bad = |what: String| (what, WEEKLY_HELP.to_string());
        let tz = match tz {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                (
                    format!("unknown time zone `{name}`"),
                    "use an IANA time zone name, e.g. \"Europe/Berlin\" or \"America/New_York\""
                        .to_string(),
                )
            })?,
        };
        let text = weekly.trim();
        let (days_text, rest) = text
            .split_once(' ')
            .ok_or_else(|| bad(format!("`{text}` has no time range")))?;
        let days = parse_days(days_text).map_err(bad)?;
        let (from_text, to_text) = rest
            .trim()
            .split_once('-')
            .ok_or_else(|| bad(format!("`{rest}` is not a range HH:MM-HH:MM")))?;
        let from = parse_time(from_text.trim(), false).map_err(bad)?;
        let (end_day, to_text) = match to_text.trim().split_once(' ') {
            Some((day, time)) => (Some(day), time.trim()),
            None => (None, to_text.trim()),
        };
        let midnight_after = to_text == "24:00";
        let to = parse_time(to_text, true).map_err(bad)?;
        let mut days_later: i8 = match end_day {
            Some(day) => {
                let [start] = days[..] else {
                    return Err(bad(format!(
                        "`{text}` names an end day: it may start on one day only"
                    )));
                };
                let end = parse_days(day).map_err(bad)?;
                let [end] = end[..] else {
                    return Err(bad(format!("`{day}` is not one day")));
                };
                let later =
                    (end.to_monday_zero_offset() - start.to_monday_zero_offset()).rem_euclid(7);
                // "sat 10:00-sat 09:00" wraps to next week; "sat 10:00-sat 24:00" does not.
                if later == 0 && !midnight_after && to <= from {
                    7
                } else {
                    later
                }
            }
            None if midnight_after => 0,
            None if to <= from => 1,
            None => 0,
        };
        if midnight_after {
            days_later += 1;
        }
        Ok(Weekly {
            text: match tz.iana_name() {
                Some(name) if name != "UTC" => format!("{text} {name}"),
                _ => format!("{text} UTC"),
            },
            days,
            from,
            days_later,
            to,
            tz,
        })
    }

    /// The occurrence starting on `date`, as instants; None where the calendar ends.
    fn on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let start = date
            .to_datetime(self.from)
            .to_zoned_datetime(self.tz.clone())
            .ok()?;
        let end = date
            .checked_add((self.days_later as i64).days())
            .ok()?
            .to_datetime(self.to)
            .to_zoned_datetime(self.tz.clone())
            .ok()?;
        Some((start.timestamp(), end.timestamp()))
    }

    /// Occurrences starting from 8 days before `now` to 8 days after, in order.
    fn around(&self, now: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = now.to_zoned_datetime(self.tz.clone()).date();
        (-8i64..=8)
            .filter_map(|d| today.checked_add(d.days()).ok())
            .filter(|d| self.days.contains(&d.weekday()))
            .filter_map(|d| self.on(d))
            .collect()
    }
}

fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    let day = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        DAYS.iter()
            .zip(FULL_DAYS)
            .find(|(_, full)| s.len() >= 3 && full.starts_with(s.as_str()))
            .map(|((_, d), _)| *d)
            .ok_or_else(|| format!("`{s}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
    };
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (mut d, end) = (day(a)?, day(b)?);
                loop {
                    days.push(d);
                    if d == end {
                        break;
                    }
                    d = d.next();
                }
            }
            None => days.push(day(part)?),
        }
    }
    days.sort_by_key(|d| d.to_monday_zero_offset());
    days.dedup();
    Ok(days)
}

fn parse_time(text: &str, end: bool) -> Result<Time, String> {
    if end && text == "24:00" {
        return Ok(Time::midnight());
    }
    let bad = || format!("`{text}` is not a time HH:MM");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

fn instant(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn system(t: Timestamp) -> SystemTime {
    SystemTime::try_from(t).unwrap_or(SystemTime::UNIX_EPOCH)
}

impl Freeze {
    /// If the freeze is in force at `now`, until when (windows that follow one another
    /// without a gap count as one).
    pub fn in_force(&self, now: SystemTime) -> Option<SystemTime> {
        match &self.window {
            Window::Between { start, end } => (now >= *start && now < *end).then_some(*end),
            Window::Weekly(w) => {
                let now = instant(now);
                let windows = w.around(now);
                let mut until = windows
                    .iter()
                    .filter(|(s, e)| *s <= now && now < *e)
                    .map(|(_, e)| *e)
                    .max()?;
                while let Some(later) = windows
                    .iter()
                    .filter(|(s, e)| *s <= until && *e > until)
                    .map(|(_, e)| *e)
                    .max()
                {
                    until = later;
                }
                Some(system(until))
            }
        }
    }

    /// When it next comes into force after `now`, if it does.
    pub fn next_start(&self, now: SystemTime) -> Option<SystemTime> {
        match &self.window {
            Window::Between { start, .. } => (*start > now).then_some(*start),
            Window::Weekly(w) => {
                let now = instant(now);
                w.around(now)
                    .into_iter()
                    .map(|(s, _)| s)
                    .filter(|s| *s > now)
                    .min()
                    .map(system)
            }
        }
    }

    /// How many of `envs` (names in `intent`) the freeze covers.
    pub fn covers<'a>(
        &self,
        intent: &super::Intent,
        envs: impl IntoIterator<Item = &'a String>,
    ) -> usize {
        envs.into_iter()
            .filter(|e| {
                intent
                    .environment(e)
                    .is_some_and(|env| self.select.matches(&env.labels))
            })
            .count()
    }

    /// The window as the intent says it: `2026-11-27T00:00:00Z..2026-11-30T00:00:00Z`, or
    /// `weekly sat 00:00-24:00 Europe/Berlin`.
    pub fn describe(&self) -> String {
        match &self.window {
            Window::Between { start, end } => format!(
                "{}..{}",
                humantime::format_rfc3339_seconds(*start),
                humantime::format_rfc3339_seconds(*end)
            ),
            Window::Weekly(w) => format!("weekly {}", w.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    fn weekly(text: &str, tz: &str) -> Freeze {
        Freeze {
            name: "f".into(),
            window: Window::Weekly(Weekly::parse(text, Some(tz)).unwrap()),
            select: Selector::All,
        }
    }

    #[test]
    fn a_weekly_freeze_keeps_its_local_hours_across_the_change_from_summer_time() {
        // Sunday 01:00-05:00 in Berlin: 23:00Z-03:00Z in summer time (2026-10-18), and
        // 23:00Z-04:00Z on 2026-10-25, when the clocks go back at 03:00 local.
        let f = weekly("sun 01:00-05:00", "Europe/Berlin");
        assert_eq!(
            f.in_force(at("2026-10-18T02:30:00Z")),
            Some(at("2026-10-18T03:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-10-18T03:30:00Z")), None);
        assert_eq!(
            f.in_force(at("2026-10-25T03:30:00Z")),
            Some(at("2026-10-25T04:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-10-25T04:00:00Z")), None);
        assert_eq!(f.in_force(at("2026-10-24T22:59:59Z")), None);
        assert_eq!(
            f.next_start(at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-24T23:00:00Z"))
        );
        // Into summer time (2026-03-29, 02:00 local skips to 03:00): 00:00Z-03:00Z.
        assert_eq!(
            f.in_force(at("2026-03-29T00:00:00Z")),
            Some(at("2026-03-29T03:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-03-28T23:30:00Z")), None);
    }

    #[test]
    fn whole_days_ranges_and_windows_over_midnight() {
        let f = weekly("sat 00:00-24:00", "UTC");
        // 2026-11-28 is a Saturday.
        assert_eq!(
            f.in_force(at("2026-11-28T12:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-11-29T00:00:00Z")), None);
        // Saturday and Sunday run into one another: in force until Monday.
        let f = weekly("sat,sun 00:00-24:00", "UTC");
        assert_eq!(
            f.in_force(at("2026-11-28T12:00:00Z")),
            Some(at("2026-11-30T00:00:00Z"))
        );
        let f = weekly("sat 10:00-sat 24:00", "UTC");
        assert_eq!(
            f.in_force(at("2026-11-28T12:00:00Z")),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-11-29T12:00:00Z")), None);
        let f = weekly("saturday 10:00-sat 09:00", "UTC");
        assert_eq!(
            f.in_force(at("2026-12-01T12:00:00Z")),
            Some(at("2026-12-05T09:00:00Z"))
        );
        let f = weekly("fri 18:00-mon 06:00", "UTC");
        assert_eq!(
            f.in_force(at("2026-11-29T12:00:00Z")),
            Some(at("2026-11-30T06:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-11-27T17:00:00Z")), None);
        let f = weekly("mon-fri 22:00-06:00", "UTC");
        // Tuesday 2026-12-01, 23:00: until Wednesday 06:00.
        assert_eq!(
            f.in_force(at("2026-12-01T23:00:00Z")),
            Some(at("2026-12-02T06:00:00Z"))
        );
        // Saturday 03:00 is after Friday's night: still in force.
        assert_eq!(
            f.in_force(at("2026-11-28T03:00:00Z")),
            Some(at("2026-11-28T06:00:00Z"))
        );
        assert_eq!(f.in_force(at("2026-11-29T03:00:00Z")), None);
    }

    #[test]
    fn bad_weekly_windows_say_how_to_write_them() {
        for (text, says) in [
            ("sat", "no time range"),
            ("sta 00:00-24:00", "not a day"),
            ("sat 25:00-26:00", "not a time"),
            ("sat,sun 18:00-mon 06:00", "one day only"),
            ("monkey 00:00-24:00", "not a day"),
            ("sa\u{2013}su 00:00-24:00", "not a day"),
            ("sat 00:00", "not a range"),
        ] {
            let (what, help) = Weekly::parse(text, None).unwrap_err();
            assert!(what.contains(says), "{text}: {what}");
            assert!(help.contains("sat 00:00-24:00"), "{help}");
        }
        let (what, _) = Weekly::parse("sat 00:00-24:00", Some("Mars/Base")).unwrap_err();
        assert!(what.contains("unknown time zone `Mars/Base`"), "{what}");
    }
}
