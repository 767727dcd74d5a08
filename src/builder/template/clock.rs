//! UTC calendar arithmetic and the two time-format languages Packer
//! templates use: Go reference-time layouts (`{{isotime "2006-01-02"}}`)
//! and C `strftime` directives (`{{strftime "%Y"}}`).
//!
//! Packer renders every time in UTC from one instant taken when the plugin
//! starts, so only UTC is needed here; no time-zone database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A broken-down UTC instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcDateTime {
    /// Seconds since the Unix epoch (negative before 1970).
    pub unix: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Calendar year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
    /// Day of week, 0 = Sunday.
    pub weekday: u32,
    /// Day of year, 1–366.
    pub yday: u32,
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01 (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl UtcDateTime {
    /// Breaks down `unix` seconds plus `nanos`.
    pub fn from_unix(unix: i64, nanos: u32) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let yday = (days - days_from_civil(year, 1, 1)) as u32 + 1;
        UtcDateTime {
            unix,
            nanos,
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
            weekday: (days + 4).rem_euclid(7) as u32,
            yday,
        }
    }

    /// Breaks down a [`SystemTime`].
    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self::from_unix(d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d: Duration = e.duration();
                let mut secs = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    secs -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Self::from_unix(secs, nanos)
            }
        }
    }

    fn hour12(&self) -> u32 {
        match self.hour % 12 {
            0 => 12,
            h => h,
        }
    }

    fn month_name(&self) -> &'static str {
        MONTHS[(self.month - 1) as usize]
    }

    fn weekday_name(&self) -> &'static str {
        WEEKDAYS[self.weekday as usize]
    }

    /// Formats with a Go reference-time layout (`Mon Jan 2 15:04:05 MST 2006`).
    pub fn format_go(&self, layout: &str) -> String {
        let mut out = String::new();
        let b = layout.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let rest = &layout[i..];
            let (text, len): (String, usize) = if rest.starts_with("January") {
                (self.month_name().to_string(), 7)
            } else if rest.starts_with("Jan") {
                (self.month_name()[..3].to_string(), 3)
            } else if rest.starts_with("Monday") {
                (self.weekday_name().to_string(), 6)
            } else if rest.starts_with("Mon") {
                (self.weekday_name()[..3].to_string(), 3)
            } else if rest.starts_with("MST") {
                ("UTC".to_string(), 3)
            } else if rest.starts_with("002") {
                (format!("{:03}", self.yday), 3)
            } else if rest.starts_with("01") {
                (format!("{:02}", self.month), 2)
            } else if rest.starts_with("02") {
                (format!("{:02}", self.day), 2)
            } else if rest.starts_with("03") {
                (format!("{:02}", self.hour12()), 2)
            } else if rest.starts_with("04") {
                (format!("{:02}", self.minute), 2)
            } else if rest.starts_with("05") {
                (format!("{:02}", self.second), 2)
            } else if rest.starts_with("06") {
                (format!("{:02}", self.year.rem_euclid(100)), 2)
            } else if rest.starts_with("15") {
                (format!("{:02}", self.hour), 2)
            } else if rest.starts_with('1') {
                (self.month.to_string(), 1)
            } else if rest.starts_with("2006") {
                (format!("{:04}", self.year), 4)
            } else if rest.starts_with("__2") {
                (format!("{:>3}", self.yday), 3)
            } else if rest.starts_with("_2") && !rest.starts_with("_2006") {
                (format!("{:>2}", self.day), 2)
            } else if rest.starts_with('2') {
                (self.day.to_string(), 1)
            } else if rest.starts_with('3') {
                (self.hour12().to_string(), 1)
            } else if rest.starts_with('4') {
                (self.minute.to_string(), 1)
            } else if rest.starts_with('5') {
                (self.second.to_string(), 1)
            } else if rest.starts_with("PM") {
                ((if self.hour >= 12 { "PM" } else { "AM" }).to_string(), 2)
            } else if rest.starts_with("pm") {
                ((if self.hour >= 12 { "pm" } else { "am" }).to_string(), 2)
            } else if let Some((text, len)) = zone(rest) {
                (text.to_string(), len)
            } else if let Some((digits, trim)) = fraction(rest) {
                (self.fraction(digits, trim, &rest[..1]), digits + 1)
            } else {
                let c = rest.chars().next().unwrap_or_default();
                (c.to_string(), c.len_utf8())
            };
            out.push_str(&text);
            i += len;
        }
        out
    }

    fn fraction(&self, digits: usize, trim: bool, sep: &str) -> String {
        let all = format!("{:09}", self.nanos);
        let mut s = all[..digits.min(9)].to_string();
        if trim {
            while s.ends_with('0') {
                s.pop();
            }
            if s.is_empty() {
                return String::new();
            }
        }
        format!("{sep}{s}")
    }

    /// Formats with `strftime` directives exactly as the Go library
    /// Packer's SDK pins (jehiah/go-strftime of 2017) does: only
    /// `%a %A %b %B %d %H %I %m %M %p %S %y %Y %z %Z %%`; any other
    /// directive is copied through unchanged, so templates render the
    /// same text as with HashiCorp's plugin.
    pub fn format_strftime(&self, format: &str) -> String {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let Some(d) = chars.next() else {
                out.push('%');
                break;
            };
            let layout = match d {
                'B' => "January",
                'b' => "Jan",
                'm' => "01",
                'A' => "Monday",
                'a' => "Mon",
                'd' => "02",
                'H' => "15",
                'I' => "03",
                'M' => "04",
                'S' => "05",
                'Y' => "2006",
                'y' => "06",
                'p' => "PM",
                'Z' => "MST",
                'z' => "-0700",
                '%' => {
                    out.push('%');
                    continue;
                }
                other => {
                    out.push('%');
                    out.push(other);
                    continue;
                }
            };
            out.push_str(&self.format_go(layout));
        }
        out
    }
}

/// Go's zone chunks, rendered for UTC.
fn zone(rest: &str) -> Option<(&'static str, usize)> {
    const ZONES: [(&str, &str, &str); 5] = [
        ("-070000", "Z070000", "+000000"),
        ("-07:00:00", "Z07:00:00", "+00:00:00"),
        ("-0700", "Z0700", "+0000"),
        ("-07:00", "Z07:00", "+00:00"),
        ("-07", "Z07", "+00"),
    ];
    for (numeric, iso, utc) in ZONES {
        if rest.starts_with(numeric) {
            return Some((utc, numeric.len()));
        }
        if rest.starts_with(iso) {
            return Some(("Z", iso.len()));
        }
    }
    None
}

/// Go's fractional-second chunk: `.000` (fixed) or `.999` (trimmed), which
/// counts only when no digit follows the run.
fn fraction(rest: &str) -> Option<(usize, bool)> {
    let b = rest.as_bytes();
    if b.len() < 2 || !(b[0] == b'.' || b[0] == b',') || !(b[1] == b'0' || b[1] == b'9') {
        return None;
    }
    let digit = b[1];
    let run = b[1..].iter().take_while(|&&c| c == digit).count();
    if b.get(1 + run).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((run, digit == b'9'))
}

/// Parses an RFC 3339 timestamp as Go's `time.Parse(time.RFC3339, s)`
/// accepts it (`2006-01-02T15:04:05Z07:00`, optional fraction), returning
/// Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T') | Some(b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += 1 + digits;
    }
    let offset = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let h = num(i + 1, 2)?;
            let m = num(i + 4, 2)?;
            if h > 23 || m > 59 {
                return None;
            }
            let o = i64::from(h * 3600 + m * 60);
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2009-02-13T23:31:30.123456789Z, a Friday, day 44 of the year.
    fn sample() -> UtcDateTime {
        UtcDateTime::from_unix(1_234_567_890, 123_456_789)
    }

    #[test]
    fn breaks_down_a_known_instant() {
        let t = sample();
        assert_eq!((t.year, t.month, t.day), (2009, 2, 13));
        assert_eq!((t.hour, t.minute, t.second), (23, 31, 30));
        assert_eq!((t.weekday, t.yday), (5, 44));
    }

    #[test]
    fn breaks_down_leap_days_and_times_before_1970() {
        let t = UtcDateTime::from_unix(951_782_400, 0); // 2000-02-29
        assert_eq!((t.year, t.month, t.day, t.yday), (2000, 2, 29, 60));
        let t = UtcDateTime::from_unix(-1, 0);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.second),
            (1969, 12, 31, 23, 59)
        );
    }

    #[test]
    fn formats_go_reference_layouts() {
        let t = sample();
        assert_eq!(
            t.format_go("2006-01-02T15:04:05Z07:00"),
            "2009-02-13T23:31:30Z"
        );
        assert_eq!(t.format_go("2006-01-02"), "2009-02-13");
        assert_eq!(
            t.format_go("Mon Jan _2 3:4:5 PM MST 06"),
            "Fri Feb 13 11:31:30 PM UTC 09"
        );
        assert_eq!(t.format_go("Monday, January 2"), "Friday, February 13");
        assert_eq!(t.format_go("20060102-150405"), "20090213-233130");
        assert_eq!(t.format_go("15:04:05.000"), "23:31:30.123");
        assert_eq!(t.format_go("05.999999999 -0700"), "30.123456789 +0000");
        assert_eq!(t.format_go("002 __2"), "044  44");
        assert_eq!(t.format_go("no layout here!"), "no layout here!");
    }

    #[test]
    fn formats_strftime_directives() {
        let t = sample();
        assert_eq!(
            t.format_strftime("%Y-%m-%d %H:%M:%S"),
            "2009-02-13 23:31:30"
        );
        assert_eq!(
            t.format_strftime("%a %A %b %B %y %I%p %Z %z %%"),
            "Fri Friday Feb February 09 11PM UTC +0000 %"
        );
        // Directives the Go library does not know are copied through.
        assert_eq!(t.format_strftime("%F %j %e %"), "%F %j %e %");
    }

    #[test]
    fn parses_rfc3339_like_go() {
        assert_eq!(parse_rfc3339("2009-02-13T23:31:30Z"), Some(1_234_567_890));
        assert_eq!(
            parse_rfc3339("2009-02-14T00:31:30.5+01:00"),
            Some(1_234_567_890)
        );
        assert_eq!(parse_rfc3339("2009-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2009-02-13 23:31:30Z"), None);
        assert_eq!(parse_rfc3339("2009-02-13T23:31:30"), None);
    }
}
