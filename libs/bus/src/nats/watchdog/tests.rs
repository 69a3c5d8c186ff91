//! The watchdog's rules, on a clock the tests give: when a server is
//! left, and which server comes next.

use super::*;

/// A watchdog with the default settings (`--nats-ping-interval 2s`,
/// `--nats-timeout 5s`).
fn dog() -> Watchdog {
    let timings = Timings::new(Duration::from_secs(2), Duration::from_secs(5));
    Watchdog::new(timings, Reach::default())
}

fn server(url: &str, failed_attempts: usize) -> Server {
    Server {
        addr: url.parse().unwrap(),
        failed_attempts,
        did_connect: false,
        is_discovered: false,
        last_error: None,
    }
}

#[test]
fn a_server_left_lately_is_tried_only_after_the_others() {
    let left = HashMap::from([("nats://a:4222".parse().unwrap(), Instant::now())]);
    for _ in 0..20 {
        let pool = vec![server("nats://a:4222", 0), server("nats://b:4222", 3)];
        let pick = choose(pool, &[], &[], &left, &HashMap::new()).unwrap();
        assert_eq!(pick.addr.as_url_str(), "nats://b:4222");
        assert_eq!(pick.delay, None, "b failed last time: the client's backoff");
    }
    let pick = choose(
        vec![server("nats://a:4222", 0)],
        &[],
        &[],
        &left,
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(pick.addr.as_url_str(), "nats://a:4222", "the only one left");
}

#[test]
fn of_servers_all_left_lately_the_one_left_longest_ago_is_tried_first() {
    let now = Instant::now();
    let left = HashMap::from([
        (
            "nats://a:4222".parse().unwrap(),
            now - Duration::from_secs(3),
        ),
        (
            "nats://b:4222".parse().unwrap(),
            now - Duration::from_secs(1),
        ),
        ("nats://c:4222".parse().unwrap(), now),
    ]);
    for _ in 0..20 {
        let pool = vec![
            server("nats://c:4222", 0),
            server("nats://b:4222", 0),
            server("nats://a:4222", 0),
        ];
        assert_eq!(
            choose(pool, &[], &[], &left, &HashMap::new())
                .unwrap()
                .addr
                .as_url_str(),
            "nats://a:4222"
        );
    }
}

#[test]
fn of_servers_all_left_lately_the_one_that_last_stored_a_probe_is_tried_first() {
    let now = Instant::now();
    let at = |secs: u64| now - Duration::from_secs(secs);
    let (a, b, c): (ServerAddr, ServerAddr, ServerAddr) = (
        "nats://a:4222".parse().unwrap(),
        "nats://b:4222".parse().unwrap(),
        "nats://c:4222".parse().unwrap(),
    );
    // a was cut off 20 s ago and left first; b stored probes until 2 s
    // ago (its cluster was electing); c is being left now.
    let left = HashMap::from([(a.clone(), at(18)), (b.clone(), at(1)), (c.clone(), now)]);
    let worked = HashMap::from([(a, at(20)), (b.clone(), at(2)), (c.clone(), at(1))]);
    for _ in 0..20 {
        let pool = vec![
            server("nats://a:4222", 0),
            server("nats://b:4222", 0),
            server("nats://c:4222", 0),
        ];
        let pick = choose(pool, std::slice::from_ref(&c), &[], &left, &worked).unwrap();
        assert_eq!(pick.addr, b);
    }
}

#[test]
fn a_server_that_did_not_greet_is_tried_after_every_other_even_one_left_lately() {
    let now = Instant::now();
    let (a, b, c): (ServerAddr, ServerAddr, ServerAddr) = (
        "nats://a:4222".parse().unwrap(),
        "nats://b:4222".parse().unwrap(),
        "nats://c:4222".parse().unwrap(),
    );
    // Leaving c; b was left a moment ago but greets; a, never left and
    // the last to store a probe, is off the network.
    let left = HashMap::from([(b.clone(), now)]);
    let worked = HashMap::from([(a.clone(), now)]);
    for _ in 0..20 {
        let pool = vec![
            server("nats://a:4222", 0),
            server("nats://b:4222", 0),
            server("nats://c:4222", 0),
        ];
        let leaving = std::slice::from_ref(&c);
        let pick = choose(pool, leaving, std::slice::from_ref(&a), &left, &worked).unwrap();
        assert_eq!(pick.addr, b);
    }
}

#[test]
fn silence_counts_for_the_next_choice_only() {
    let dog = dog();
    let a: ServerAddr = "nats://a:4222".parse().unwrap();
    let pool = || vec![server("nats://a:4222", 0), server("nats://b:4222", 0)];
    dog.state().silent = vec![a.clone()];
    assert_ne!(dog.choose(pool()).unwrap().addr, a);
    assert!(dog.state().silent.is_empty());
    assert_eq!(
        dog.state().known.len(),
        2,
        "the pool is known for the next leave"
    );
}

#[test]
fn a_server_that_could_not_be_reached_is_left_like_one_that_failed() {
    let dog = dog();
    let pool = || vec![server("nats://a:4222", 0), server("nats://b:4222", 0)];
    // Connected to a, then left it.
    let first = dog.choose(pool()).unwrap().addr;
    dog.connected();
    let second = dog.choose(pool()).unwrap().addr;
    assert_ne!(first, second, "the server left is tried last");
    // The attempt at the other never connects (its host is off the
    // network): the next try goes back to the first, left longer ago.
    assert_eq!(dog.choose(pool()).unwrap().addr, first);
    assert_eq!(dog.choose(pool()).unwrap().addr, second);
}

#[test]
fn servers_in_good_standing_are_picked_at_random_and_at_once() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let pool = vec![
            server("nats://a:4222", 0),
            server("nats://b:4222", 0),
            server("nats://c:4222", 1),
        ];
        let pick = choose(pool, &[], &[], &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(pick.delay, Some(Duration::ZERO));
        seen.insert(pick.addr.as_url_str().to_owned());
    }
    let want = ["nats://a:4222", "nats://b:4222"].map(String::from);
    assert_eq!(seen, want.into_iter().collect());
}

#[test]
fn a_stalled_connection_or_a_timed_out_write_is_left_once() {
    let dog = dog();
    let t0 = Instant::now();
    dog.probe_answered(t0, true);
    assert_eq!(dog.should_leave(t0 + Duration::from_secs(2)), None);
    assert_eq!(
        dog.should_leave(t0 + Duration::from_secs(3)),
        Some("no probe answered")
    );
    assert!(
        dog.should_leave(t0 + Duration::from_secs(4)).is_none(),
        "the clock restarts"
    );
    // Writes made on the next connection, after the leave at 3 s.
    let later = t0 + Duration::from_millis(3500);
    dog.wrote(dog.generation(), later, Duration::from_secs(5), true);
    assert_eq!(
        dog.should_leave(t0 + Duration::from_secs(4)),
        Some("a write got no answer")
    );
    let later = t0 + Duration::from_millis(4500);
    dog.wrote(dog.generation(), later, Duration::from_secs(5), true);
    dog.wrote(dog.generation(), later, Duration::from_secs(5), false);
    assert!(
        dog.should_leave(t0 + Duration::from_secs(5)).is_none(),
        "a later write went through"
    );
}

#[test]
fn a_write_that_timed_out_on_a_connection_left_since_is_not_held_against_the_next() {
    let dog = dog();
    let t0 = Instant::now();
    dog.probe_answered(t0, true);
    let made_on = dog.generation();
    assert!(dog.should_leave(t0 + Duration::from_secs(3)).is_some());
    dog.wrote(made_on, t0, Duration::from_secs(5), true);
    assert!(
        dog.should_leave(t0 + Duration::from_secs(3)).is_none(),
        "left a good server"
    );
}

#[test]
fn a_write_whose_own_limit_was_shorter_than_the_stall_time_leaves_no_server() {
    let dog = dog();
    let t0 = Instant::now();
    dog.wrote(dog.generation(), t0, Duration::from_millis(1250), true);
    assert!(
        dog.should_leave(t0 + Duration::from_secs(1)).is_none(),
        "a lease renewal's quarter of the lease says nothing of the server"
    );
}

#[test]
fn a_write_that_timed_out_while_a_probe_was_stored_leaves_no_server() {
    let dog = dog();
    let t0 = Instant::now();
    dog.probe_answered(t0 + Duration::from_secs(1), true);
    dog.wrote(dog.generation(), t0, Duration::from_secs(5), true);
    assert!(
        dog.should_leave(t0 + Duration::from_secs(2)).is_none(),
        "the server stores probes: the write's stream was electing"
    );
}

#[test]
fn a_write_that_timed_out_while_probes_got_only_the_account_info_leaves_the_server() {
    let dog = dog();
    let t0 = Instant::now();
    dog.probe_answered(t0 + Duration::from_secs(1), false);
    dog.wrote(dog.generation(), t0, Duration::from_secs(5), true);
    assert!(
        dog.should_leave(t0 + Duration::from_secs(2)).is_some(),
        "a cut-off meta leader answers the account info until it steps down"
    );
}

#[test]
fn a_server_that_answers_but_stores_no_probe_past_an_election_is_left() {
    let dog = dog();
    let t0 = Instant::now();
    dog.probe_answered(t0, true);
    for s in 1..=8 {
        dog.probe_answered(t0 + Duration::from_secs(s), false);
        assert!(dog.should_leave(t0 + Duration::from_secs(s)).is_none());
    }
    dog.probe_answered(t0 + Duration::from_secs(9), false);
    assert_eq!(
        dog.should_leave(t0 + Duration::from_secs(9)),
        Some("no probe stored")
    );
}

#[test]
fn a_node_without_an_answer_for_the_cut_off_time_is_cut_off_until_one_comes() {
    let timings = Timings::new(Duration::from_secs(2), Duration::from_secs(5));
    let reach = Reach::default();
    let dog = Watchdog::new(timings, reach.clone());
    let t0 = Instant::now();
    dog.probe_answered(t0, true);
    dog.update_reach(t0 + Duration::from_secs(8));
    assert!(!reach.is_cut_off());
    dog.update_reach(t0 + Duration::from_secs(9));
    assert!(reach.is_cut_off());
    dog.probe_answered(t0 + Duration::from_secs(10), true);
    dog.update_reach(t0 + Duration::from_secs(10));
    assert!(!reach.is_cut_off());
}
