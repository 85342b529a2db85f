//! The scenario format's parsing and validation, on hand-written files.

use super::*;

#[test]
fn shipped_scenarios_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("scenarios dir") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            // `cohort run NAME` finds it wherever the binary runs.
            let name = p.file_stem().unwrap().to_str().unwrap();
            assert!(
                crate::runner::SHIPPED
                    .iter()
                    .any(|(n, t)| *n == name && *t == text),
                "{name} is not in runner::SHIPPED"
            );
            n += 1;
        }
    }
    assert!(n >= 7, "only {n} scenarios");
}

#[test]
fn a_repeated_timeline_must_wait_and_grow_by_steps() {
    let scenario = |top: &str, action: &str| {
        format!(
            "name = \"x\"\nduration = \"10s\"\n{top}\n[[topics]]\nname = \"t\"\npartitions = 3\n\
             [[members]]\nname = \"m\"\n[[actions]]\n{action}"
        )
    };
    let err = |top: &str, action: &str| {
        Scenario::parse(&scenario(top, action))
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(
            "repeat_timeline = true",
            "action = \"crash\"\ntarget = \"m\""
        )
        .contains("at least 100 ms")
    );
    assert!(
        err(
            "repeat_timeline = true",
            "action = \"add-partitions\"\npartitions = 6\nafter = \"1s\""
        )
        .contains("grow_by")
    );
    assert!(
        err(
            "",
            "action = \"add-partitions\"\npartitions = 6\ngrow_by = 1"
        )
        .contains("not both")
    );
    assert!(err("", "action = \"add-partitions\"").contains("`partitions` or `grow_by`"));
    let ok = Scenario::parse(&scenario(
        "repeat_timeline = true",
        "action = \"add-partitions\"\ngrow_by = 2\nafter = \"1s\"",
    ))
    .expect("valid");
    assert!(ok.repeat_timeline);
    assert_eq!(ok.actions[0].grow_by, Some(2));
}

#[test]
fn mistakes_are_reported() {
    let base = r#"
        name = "x"
        duration = "10s"
        [[topics]]
        name = "t"
        partitions = 3
        [[members]]
        name = "m"
        count = 2
    "#;
    assert!(Scenario::parse(base).is_ok());
    for (extra, want) in [
        (
            "[[actions]]\naction = \"crash\"\ntarget = \"x\"",
            "no member",
        ),
        (
            "[[actions]]\naction = \"freeze\"\ntarget = \"m1\"",
            "needs `for`",
        ),
        ("[[actions]]\naction = \"crash\"", "needs a `target`"),
        (
            "[[actions]]\naction = \"add-partitions\"\npartitions = 2",
            "must grow",
        ),
        (
            "[[actions]]\naction = \"crash\"\ntarget = \"m1\"\nrepeat = 3",
            "`repeat` needs",
        ),
        ("[defaults]\nbalancers = [\"nope\"]", "unknown balancer"),
        ("colour = 3", "unknown field"),
    ] {
        let text = format!("{base}\n{extra}");
        let e = Scenario::parse(&text).expect_err(extra).to_string();
        assert!(e.contains(want), "{extra}: {e}");
    }
}

/// Values that used to overflow `Instant` arithmetic, abort on allocation or be clamped
/// silently are clear errors when the file is read.
#[test]
fn values_out_of_range_are_refused_when_read() {
    let scenario = |duration: &str, topic: &str, member: &str, extra: &str| {
        format!(
            "name = \"x\"\nduration = \"{duration}\"\n{extra}\n[[topics]]\nname = \"t\"\n{topic}\n[[members]]\nname = \"m\"\n{member}"
        )
    };
    for (text, want) in [
        (
            scenario("1000000000s", "partitions = 3", "", ""),
            "duration: 31years",
        ),
        (
            scenario("10s", "partitions = 3", "count = 4000000000", ""),
            "member m: count: 4000000000 is outside 1..=1000",
        ),
        (
            scenario(
                "10s",
                "partitions = 3",
                "",
                "[producer]\nrecord_size = 10000000000",
            ),
            "record_size",
        ),
        (
            scenario("10s", "partitions = 3", "", "[producer]\nrate = 4294967295"),
            "producer: rate",
        ),
        (scenario("10s", "partitions = 0", "", ""), "partitions: 0"),
        (
            scenario("10s", "partitions = 3", "weight = 0", ""),
            "member m: weight: 0 is outside 1..=1000",
        ),
        (
            scenario("10s", "partitions = 3", "weight = 4294967295", ""),
            "weight",
        ),
        (
            format!(
                "{}\n[[actions]]\nat = \"100000000h\"\naction = \"crash\"\ntarget = \"m\"",
                scenario("10s", "partitions = 3", "", "")
            ),
            "action 1 (Crash): at",
        ),
    ] {
        let e = Scenario::parse(&text).expect_err(&text).to_string();
        assert!(e.contains(want), "{text}\n=> {e}");
    }
    let ok = Scenario::parse(&scenario("1h", "partitions = 3", "", "")).unwrap();
    assert_eq!(
        ok.clone().scaled(24).unwrap().duration,
        Duration::from_secs(86_400)
    );
    let e = ok.scaled(u32::MAX).unwrap_err().to_string();
    assert!(e.contains("--scale 4294967295"), "{e}");
}

#[test]
fn loss_needs_a_percent_and_netns_needs_the_runs_own_kafka() {
    let scenario = |broker: &str, action: &str| {
        format!(
            "name = \"x\"\nduration = \"10s\"\n{broker}\n[[topics]]\nname = \"t\"\npartitions = 3\n\
             [[members]]\nname = \"m\"\nplacement = \"netns\"\n[[actions]]\nat = \"1s\"\n{action}"
        )
    };
    let loss =
        |percent: &str| format!("action = \"loss\"\ntarget = \"m\"\nfor = \"2s\"\n{percent}");
    assert!(Scenario::parse(&scenario("", &loss("loss = 30"))).is_ok());
    for bad in ["", "loss = 0", "loss = 101"] {
        let e = Scenario::parse(&scenario("", &loss(bad)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("percent of packets"), "{bad}: {e}");
    }
    for broker in [
        "[broker]\nkind = \"tansu\"",
        "[broker]\nbootstrap = \"127.0.0.1:9092\"",
        "[broker]\nimage = \"apache/kafka:4.4.0\"",
    ] {
        let e = Scenario::parse(&scenario(broker, &loss("loss = 5")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("netns"), "{broker}: {e}");
    }
}
