use super::*;

fn spec(line: &str) -> Spec {
    Spec::parse_line(line).unwrap().unwrap()
}

fn err(line: &str) -> String {
    Spec::parse_line(line).unwrap_err()
}

#[test]
fn parse_and_print_round_trip() {
    let s = spec(
        "db/x/ --op write,fsync --errno eio --probability 0.25 --seed 7 --after 2 --count 3 \
         --delay-ms 10 --pid 42",
    );
    assert_eq!(s.prefix, b"/db/x");
    assert!(s.ops.contains(Op::Write) && s.ops.contains(Op::Fsync) && !s.ops.contains(Op::Read));
    assert_eq!(s.errno.unwrap().code(), libc::EIO);
    assert_eq!((s.probability, s.seed, s.after), (0.25, Some(7), 2));
    assert_eq!((s.count, s.delay_ms, s.pid), (Some(3), 10, Some(42)));
    assert_eq!(spec(&s.to_line()), s);
    let w = spec("/a --op=write --short-write=100");
    assert_eq!(w.short_write, Some(100));
    assert_eq!(spec(&w.to_line()), w);
    // Odd bytes in a prefix survive the trip.
    let odd = Spec::parse(&["/a\\x20b\\\\c\\xff", "--op", "all", "--errno", "28"]).unwrap();
    assert_eq!(odd.prefix, b"/a b\\c\xff");
    assert_eq!(odd.errno.unwrap().code(), libc::ENOSPC);
    assert_eq!(spec(&odd.to_line()), odd);
    assert_eq!(spec("/ --op all --errno EIO").prefix, b"/");
    assert_eq!(spec("./a//./b/ --op read --errno EIO").prefix, b"/a/b");
    assert_eq!(Spec::parse_line("  # comment").unwrap(), None);
    assert_eq!(Spec::parse_line("").unwrap(), None);
}

#[test]
fn bad_rules_are_one_line_errors() {
    for (line, says) in [
        ("--op write --errno EIO", "path prefix"),
        ("/a --errno EIO", "--op is missing"),
        ("/a --op write", "does nothing"),
        ("/a --op wrote --errno EIO", "'wrote'"),
        ("/a --op write --errno EWHAT", "'EWHAT'"),
        ("/a --op write --errno ENOSYS", "ENOSYS"),
        ("/a --op write --errno EIO --probability 0", "(0, 1]"),
        ("/a --op write --errno EIO --probability 1.5", "(0, 1]"),
        ("/a --op write --errno EIO --count 0", "never fire"),
        (
            "/a --op write --errno EIO --delay-ms 600001",
            "up to 600000",
        ),
        ("/a --op write --errno EIO --after -1", "whole number"),
        ("/a --op write --errno EIO --pid 0", "not a process"),
        ("/a --op read --short-write 10", "--op write alone"),
        ("/a --op write --short-write 10 --errno EIO", "exclude"),
        ("/a/../b --op write --errno EIO", "'..'"),
        ("/a\\x0 --op write --errno EIO", "two hex digits"),
        ("/a\\q --op write --errno EIO", "backslash"),
        ("/a --op write --errno EIO --bogus 1", "'--bogus'"),
        ("/a --op write --errno", "needs a value"),
    ] {
        let e = err(line);
        assert!(e.contains(says), "{line}: {e}");
        assert!(!e.contains('\n'), "{line}: one line");
    }
    assert!(err(&format!("/{} --op all --errno EIO", "a".repeat(MAX_LINE))).contains("longer"));
    assert!(err(&format!("/{} --op all --errno EIO", "a".repeat(256))).contains("255"));
}

#[test]
fn prefixes_cover_whole_components() {
    assert!(covers(b"/db", b"/db") && covers(b"/db", b"/db/x/y"));
    assert!(!covers(b"/db", b"/dbx") && !covers(b"/db", b"/"));
    assert!(covers(b"/", b"/anything"));
}

#[test]
fn after_count_and_first_rule_decide() {
    let mut r = Rules::new();
    let a = r
        .add(spec("/a --op write --errno EIO --after 2 --count 2"))
        .unwrap();
    let b = r.add(spec("/ --op write,read --errno ENOSPC")).unwrap();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(r.decide(Op::Write, &[b"/a/f"], 1, || None).map(|f| f.rule));
    }
    // Two matches pass rule a (rule b fires for them), then a fires
    // twice, then it is spent and b fires again.
    assert_eq!(got, [Some(b), Some(b), Some(a), Some(a), Some(b), Some(b)]);
    assert_eq!(r.decide(Op::Getattr, &[b"/a/f"], 1, || None), None);
    assert_eq!(r.decide(Op::Read, &[b"/x"], 1, || None).unwrap().rule, b);
    assert!(r.list().contains(", spent"));
    assert_eq!(r.clear(Some(a)), Ok(1));
    assert_eq!(r.clear(Some(a)).unwrap_err().code(), libc::ENOENT);
    assert_eq!(r.clear(None), Ok(1));
    assert!(r.is_empty());
}

#[test]
fn probability_is_reproducible_by_seed() {
    let run = |seed: u64| {
        let mut r = Rules::new();
        r.add(spec(&format!(
            "/ --op read --errno EIO --probability 0.3 --seed {seed}"
        )))
        .unwrap();
        (0..1000)
            .map(|_| r.decide(Op::Read, &[b"/f"], 1, || None).is_some())
            .collect::<Vec<_>>()
    };
    let one = run(11);
    assert_eq!(one, run(11), "same seed, same faults");
    assert_ne!(one, run(12), "another seed, other faults");
    let fired = one.iter().filter(|&&f| f).count();
    assert!((200..400).contains(&fired), "about 30% of 1000: {fired}");
}

#[test]
fn pid_rules_match_the_thread_or_its_process() {
    let mut r = Rules::new();
    r.add(spec("/ --op read --errno EIO --pid 100")).unwrap();
    assert!(r.decide(Op::Read, &[b"/f"], 100, || None).is_some());
    assert!(r.decide(Op::Read, &[b"/f"], 101, || Some(100)).is_some());
    assert!(r.decide(Op::Read, &[b"/f"], 102, || Some(102)).is_none());
    let mut asked = 0;
    r.decide(Op::Write, &[b"/f"], 102, || {
        asked += 1;
        None
    });
    assert_eq!(
        asked, 0,
        "the process is looked up only for a matching request"
    );
}

#[test]
fn limits_and_the_list() {
    let mut r = Rules::new();
    for i in 0..MAX_RULES {
        r.add(spec(&format!("/r{i} --op read --errno EIO")))
            .unwrap();
    }
    assert_eq!(
        r.add(spec("/x --op read --errno EIO")).unwrap_err().code(),
        libc::ENOSPC
    );
    let (page, next) = r.list_page(0, 200);
    assert!(page.starts_with("1 /r0 --op read --errno EIO --seed "));
    let next = next.unwrap();
    let (rest, _) = r.list_page(next, usize::MAX);
    assert_eq!(format!("{page}{rest}"), r.list());
    assert_eq!(r.list().lines().count(), MAX_RULES);
    // The list reads back as rules.
    for line in r.list().lines() {
        let (_, rule) = line.split_once(' ').unwrap();
        let rule = rule.split("  #").next().unwrap();
        spec(rule);
    }
}

#[test]
fn rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rules");
    std::fs::write(
        &p,
        "# disk full\n/out --op write --errno ENOSPC\n\n/in --op read --errno EIO\n",
    )
    .unwrap();
    let specs = load_file(&p).unwrap();
    assert_eq!(specs.len(), 2);
    std::fs::write(&p, "/out --op write --errno ENOSPC\n/in --op read\n").unwrap();
    let e = load_file(&p).unwrap_err();
    assert!(e.contains("line 2") && e.contains("does nothing"), "{e}");
    assert!(load_file(&dir.path().join("missing")).is_err());
}
