//! Hugepage availability, so start-up can tell whether DPDK's mempools will sit on hugepages
//! or need `--no-huge` in the EAL arguments.

/// Free hugepages of the default size and that size in KiB, from `/proc/meminfo`
/// (`None` if the file cannot be read or lacks the fields).
pub fn free_hugepages() -> Option<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.get(name.len()..)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("HugePages_Free:")?, field("Hugepagesize:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let t = "MemTotal: 1 kB\nHugePages_Total:     512\nHugePages_Free:      500\nHugepagesize:       2048 kB\n";
        assert_eq!(parse_meminfo(t), Some((500, 2048)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }
}
