//! A by-hand `strftime` for the templates' `strftime_now(format)` global.
//!
//! transformers' `strftime_now` is `datetime.now().strftime(format)`: the local time, as a
//! naive datetime, formatted by the C library in the "C" locale. Here "now" is the current
//! **UTC** time (no time-zone database is consulted), and the directives are implemented by
//! hand with the C locale's English names, matching glibc:
//!
//! `%a %A %b %B %c %C %d %D %e %f %F %g %G %h %H %I %j %k %l %m %M %n %p %P %r %R %S %t %T
//! %u %U %V %w %W %x %X %y %Y %z %Z %%`.
//!
//! As for a naive datetime, `%z` and `%Z` are empty. An unknown directive is written as-is.

use std::time::{SystemTime, UNIX_EPOCH};

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A calendar date and time of day (proleptic Gregorian, no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// The year, e.g. 2024.
    pub year: i64,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
    /// 0..=59.
    pub minute: u32,
    /// 0..=59 (60 for a leap second is printed as given).
    pub second: u32,
    /// 0..=999_999.
    pub microsecond: u32,
}

impl DateTime {
    /// The UTC date and time `secs` seconds after 1970-01-01T00:00:00.
    pub fn from_unix(secs: i64, microsecond: u32) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            microsecond,
        }
    }

    /// The current UTC time (the Unix epoch if the clock is before it).
    pub fn now_utc() -> DateTime {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        DateTime::from_unix(d.as_secs() as i64, d.subsec_micros())
    }

    /// 0 = Sunday .. 6 = Saturday.
    fn weekday(&self) -> u32 {
        let days = days_from_civil(self.year, self.month, self.day);
        (days + 4).rem_euclid(7) as u32 // 1970-01-01 was a Thursday
    }

    /// 0-based day of the year.
    fn yday(&self) -> u32 {
        (days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1)) as u32
    }

    /// ISO 8601 week-numbering year and week (1..=53).
    fn iso_week(&self) -> (i64, u32) {
        let iso_wday = (self.weekday() + 6) % 7 + 1; // Monday = 1 .. Sunday = 7
        let week = (self.yday() as i64 + 1 - iso_wday as i64 + 10) / 7;
        if week < 1 {
            (self.year - 1, iso_weeks_in_year(self.year - 1))
        } else if week > iso_weeks_in_year(self.year) as i64 {
            (self.year + 1, 1)
        } else {
            (self.year, week as u32)
        }
    }
}

fn iso_weeks_in_year(y: i64) -> u32 {
    let p = |y: i64| (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)).rem_euclid(7);
    if p(y) == 4 || p(y - 1) == 3 {
        53
    } else {
        52
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats `t` like C's `strftime` in the "C" locale (see the module documentation).
pub fn strftime(format: &str, t: &DateTime) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(d) => directive(&mut out, d, t),
            None => out.push('%'),
        }
    }
    out
}

fn directive(out: &mut String, d: char, t: &DateTime) {
    let weekday = t.weekday() as usize;
    let day_name = WEEKDAYS.get(weekday).copied().unwrap_or("?");
    let month_name = MONTHS
        .get((t.month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("?");
    let hour12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    let text = match d {
        'a' => day_name.chars().take(3).collect(),
        'A' => day_name.to_string(),
        'b' | 'h' => month_name.chars().take(3).collect(),
        'B' => month_name.to_string(),
        'c' => strftime("%a %b %e %H:%M:%S %Y", t),
        'C' => format!("{:02}", t.year.div_euclid(100)),
        'd' => format!("{:02}", t.day),
        'D' | 'x' => strftime("%m/%d/%y", t),
        'e' => format!("{:2}", t.day),
        'f' => format!("{:06}", t.microsecond),
        'F' => strftime("%Y-%m-%d", t),
        'g' => format!("{:02}", t.iso_week().0.rem_euclid(100)),
        'G' => t.iso_week().0.to_string(),
        'H' => format!("{:02}", t.hour),
        'I' => format!("{hour12:02}"),
        'j' => format!("{:03}", t.yday() + 1),
        'k' => format!("{:2}", t.hour),
        'l' => format!("{hour12:2}"),
        'm' => format!("{:02}", t.month),
        'M' => format!("{:02}", t.minute),
        'n' => "\n".to_string(),
        'p' => if t.hour < 12 { "AM" } else { "PM" }.to_string(),
        'P' => if t.hour < 12 { "am" } else { "pm" }.to_string(),
        'r' => strftime("%I:%M:%S %p", t),
        'R' => strftime("%H:%M", t),
        'S' => format!("{:02}", t.second),
        't' => "\t".to_string(),
        'T' | 'X' => strftime("%H:%M:%S", t),
        'u' => ((weekday + 6) % 7 + 1).to_string(),
        'U' => format!("{:02}", (t.yday() as usize + 7 - weekday) / 7),
        'V' => format!("{:02}", t.iso_week().1),
        'w' => weekday.to_string(),
        'W' => format!("{:02}", (t.yday() as usize + 7 - (weekday + 6) % 7) / 7),
        'y' => format!("{:02}", t.year.rem_euclid(100)),
        'Y' => t.year.to_string(),
        'z' | 'Z' => String::new(),
        '%' => "%".to_string(),
        other => format!("%{other}"),
    };
    out.push_str(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip() {
        // 2024-07-26T14:05:09Z
        let t = DateTime::from_unix(1_722_002_709, 0);
        assert_eq!((t.year, t.month, t.day), (2024, 7, 26));
        assert_eq!((t.hour, t.minute, t.second), (14, 5, 9));
        assert_eq!(strftime("%A %d %b %Y %j", &t), "Friday 26 Jul 2024 208");
        let epoch = DateTime::from_unix(0, 0);
        assert_eq!(strftime("%F %T %a", &epoch), "1970-01-01 00:00:00 Thu");
    }
}
