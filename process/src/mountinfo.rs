//! /proc/self/mountinfo, which the host side (cgroup mounts) and tiny-init
//! (the mount that holds the rootfs) both read.

/// mountinfo escapes space, tab, newline and backslash as \ooo.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let n = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(n) = n {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point under which `path` lies (the longest that holds it),
/// and whether that mount is shared, from mountinfo's `text`.
pub fn holding_mount(text: &str, path: &str) -> Option<(String, bool)> {
    let mut best: Option<(String, bool)> = None;
    for line in text.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| unescape(p)) else {
            continue;
        };
        let under = path == point
            || point == "/"
            || path
                .strip_prefix(point.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        // Later lines are later mounts: on the same point, the one on top.
        if under && best.as_ref().is_none_or(|(b, _)| point.len() >= b.len()) {
            let shared = fields.iter().skip(6).any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/a\\b"), "/a\\b");
    }

    #[test]
    fn the_holding_mount_is_the_longest_and_last() {
        let text = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /tmp/x rw shared:5 - tmpfs tmpfs rw
31 22 0:41 / /tmp/xy rw - tmpfs tmpfs rw
32 30 0:42 / /tmp/x/rootfs rw - overlay overlay rw
33 30 0:43 / /tmp/x/rootfs rw shared:9 - overlay overlay rw
34 22 0:44 / /srv/a\\040b rw - tmpfs tmpfs rw
";
        assert_eq!(
            holding_mount(text, "/tmp/x/rootfs"),
            Some(("/tmp/x/rootfs".into(), true))
        );
        assert_eq!(
            holding_mount(text, "/tmp/x/other"),
            Some(("/tmp/x".into(), true))
        );
        assert_eq!(holding_mount(text, "/tmp/xyz"), Some(("/".into(), true)));
        assert_eq!(
            holding_mount(text, "/tmp/xy/r"),
            Some(("/tmp/xy".into(), false))
        );
        assert_eq!(
            holding_mount(text, "/srv/a b/r"),
            Some(("/srv/a b".into(), false))
        );
    }
}
