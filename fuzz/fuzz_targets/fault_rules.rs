//! Feeds arbitrary text to the fault rule parser and arbitrary requests to
//! the rules: a line is refused with a one-line error or parses into a rule
//! that prints back to the same rule; adding, deciding and clearing never
//! panic, a spent rule never fires again, a rule fires only on requests it
//! covers, and the same seed gives the same decisions.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use triefs::fault::{Rules, Spec};
use triefs::request::Op;

#[derive(Arbitrary, Debug)]
struct Input {
    lines: Vec<String>,
    requests: Vec<(u8, Vec<u8>, u32)>,
}

fuzz_target!(|input: Input| {
    let mut specs = Vec::new();
    for line in input.lines.iter().take(16) {
        match Spec::parse_line(line) {
            Ok(Some(s)) => {
                let back = Spec::parse_line(&s.to_line())
                    .expect("a printed rule parses")
                    .expect("a printed rule is not empty");
                assert_eq!(back, s, "print and parse agree");
                specs.push(s);
            }
            Ok(None) => {}
            Err(e) => assert!(!e.contains('\n'), "one line: {e}"),
        }
    }
    let run = || {
        let mut rules = Rules::new();
        for s in &specs {
            let mut s = s.clone();
            s.seed.get_or_insert(1);
            let _ = rules.add(s);
        }
        let mut got = Vec::new();
        for (op, path, pid) in input.requests.iter().take(256) {
            let op = Op::ALL[usize::from(*op) % Op::ALL.len()];
            let spent_before: Vec<u32> =
                rules.iter().filter(|r| r.spent()).map(|r| r.id).collect();
            let f = rules.decide(op, &[path], *pid, || Some(pid.wrapping_add(1)));
            if let Some(f) = f {
                assert!(!spent_before.contains(&f.rule), "a spent rule fired");
                let r = rules.iter().find(|r| r.id == f.rule).expect("the rule exists");
                assert!(r.spec.covers(path) && r.spec.ops.contains(op));
                assert!(op.can_fail());
            }
            got.push(f.map(|f| f.rule));
        }
        let listed = rules.list();
        assert_eq!(listed.lines().count(), rules.iter().count());
        assert!(rules.clear(None).is_ok());
        got
    };
    assert_eq!(run(), run(), "same seeds, same faults");
});
