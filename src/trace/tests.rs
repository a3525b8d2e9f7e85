use super::*;

fn event(path: &[u8], errno: Option<i32>) -> Event {
    Event {
        time: UNIX_EPOCH + Duration::new(1_764_521_881, 123_456_789),
        pid: 42,
        uid: 1000,
        op: Op::Write,
        path: path.to_vec(),
        path2: None,
        range: Some((4096, 100)),
        xattr: None,
        errno: errno.map(Errno::new),
        fault: errno.map(|_| 3),
        latency: Duration::from_micros(17),
    }
}

#[test]
fn text_and_json_lines() {
    let e = event(b"/db/a b", Some(libc::ENOSPC));
    assert_eq!(
        e.text(b"cat"),
        "16:58:01.123456 42 cat 1000 write /db/a\\x20b off=4096 len=100 = ENOSPC [fault 3] 17us\n"
    );
    assert_eq!(
        e.json(b"cat"),
        "{\"time\":\"2025-11-30T16:58:01.123456Z\",\"pid\":42,\"comm\":\"cat\",\"uid\":1000,\
         \"op\":\"write\",\"path\":\"/db/a b\",\"offset\":4096,\"size\":100,\"result\":\"ENOSPC\",\
         \"errno\":28,\"fault\":3,\"latency_us\":17}\n"
    );
    let mut ok = event(b"/q\"\n\xff", None);
    ok.path2 = Some(b"/r".to_vec());
    ok.range = None;
    assert!(ok.text(b"sh").contains(" /q\"\\x0a\\xff -> /r = OK 17us"));
    assert!(
        ok.json(b"sh")
            .contains("\"path\":\"/q\\\"\\u000a\u{fffd}\",\"path2\":\"/r\"")
    );
}

#[test]
fn xattr_names_show() {
    let mut x = event(b"/f", Some(libc::ENODATA));
    x.op = Op::Getxattr;
    x.range = None;
    x.fault = None;
    x.xattr = Some(b"security.capability".to_vec());
    assert!(
        x.text(b"a")
            .contains(" getxattr /f name=security.capability = ENODATA 17us")
    );
    assert!(
        x.json(b"a")
            .contains(",\"name\":\"security.capability\",\"result\":\"ENODATA\"")
    );
}

#[test]
fn readers_filter_bound_and_drain() {
    let mut t = Tracers::default();
    let all = t.start(b"/".to_vec(), false).unwrap();
    let db = t.start(b"/db".to_vec(), true).unwrap();
    assert!(t.wants(b"/x") && t.wants(b"/db/y"));
    t.record(&event(b"/x", None), b"a");
    t.record(&event(b"/db/y", None), b"a");
    let (dropped, lines) = t.take(all, usize::MAX).unwrap();
    assert_eq!((dropped, lines.lines().count()), (0, 2));
    let (_, lines) = t.take(db, usize::MAX).unwrap();
    assert_eq!(lines.lines().count(), 1);
    assert!(lines.starts_with('{'));
    assert_eq!(t.take(all, usize::MAX).unwrap().1, "", "drained");
    // Bounded: past MAX_BUFFER lines are counted, not kept.
    let line = event(b"/x", None).text(b"a").len();
    let n = MAX_BUFFER / line + 10;
    for _ in 0..n {
        t.record(&event(b"/x", None), b"a");
    }
    let (first, _) = t.take(all, 1000).unwrap();
    assert!(first >= 10, "dropped {first}");
    // Takes are whole lines.
    let (_, part) = t.take(all, 1000).unwrap();
    assert!(part.ends_with('\n') && part.len() <= 1000);
    assert_eq!(t.stop(all), Ok(()));
    assert_eq!(t.take(all, 10).unwrap_err().code(), libc::ENOENT);
    for _ in 1..MAX_TRACERS {
        t.start(b"/".to_vec(), false).unwrap();
    }
    assert_eq!(
        t.start(b"/".to_vec(), false).unwrap_err().code(),
        libc::EBUSY
    );
}
