//! Figures about this process read from `/proc/self`.

use std::fs;

/// Linux reports CPU times in /proc in USER_HZ ticks, which the kernel ABI fixes at 100.
const TICKS_PER_SECOND: f64 = 100.0;

/// A snapshot of the process as the kernel sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
}

/// Resident set size in bytes (0 if /proc is unreadable).
pub fn resident_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .map(|status| status_field_kib(&status, "VmRSS:") * 1024)
        .unwrap_or(0)
}

/// Reads everything the process metrics need.
pub fn stats() -> ProcessStats {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let open_fds = fs::read_dir("/proc/self/fd")
        .map(|entries| entries.count() as u64)
        .unwrap_or(0);
    ProcessStats {
        resident_bytes: status_field_kib(&status, "VmRSS:") * 1024,
        virtual_bytes: status_field_kib(&status, "VmSize:") * 1024,
        threads: status_field_kib(&status, "Threads:"),
        cpu_seconds: cpu_ticks(&stat) as f64 / TICKS_PER_SECOND,
        open_fds,
    }
}

/// The number in a `/proc/self/status` line such as `VmRSS:   1234 kB`.
fn status_field_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}

/// utime + stime from `/proc/self/stat`; the command name may contain spaces,
/// so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> u64 {
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 0 is the state; utime and stime are stat fields 14 and 15.
    let field = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kibibytes() {
        let status = "Name:\tshortener\nVmSize:\t  20000 kB\nVmRSS:\t   9000 kB\nThreads:\t7\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), 9000);
        assert_eq!(status_field_kib(status, "Threads:"), 7);
        assert_eq!(status_field_kib(status, "Missing:"), 0);
    }

    #[test]
    fn cpu_ticks_survive_a_command_name_with_spaces() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3";
        assert_eq!(cpu_ticks(stat), 300);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(resident_bytes() > 0);
        assert!(stats().threads >= 1);
    }
}
