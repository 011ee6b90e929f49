//! Events: an application that follows them from the start holds the
//! live set, through restarts, as the node sees it.

use super::*;

/// Who a follower of node `i`'s events believes alive, by the rule
/// [`Event`] documents: `Up` puts an endpoint in, `Down`, `Restarted` and
/// `Removed` take it out (`Suspect` does not: a suspect is up until down).
fn followed<S: Storage>(net: &Net<S>, i: usize) -> Vec<SocketAddr> {
    let mut alive: Vec<SocketAddr> = Vec::new();
    for (_, e) in &net.events[i] {
        match e {
            Ev::Up(a) if !alive.contains(a) => alive.push(*a),
            Ev::Down(a) | Ev::Restarted { endpoint: a, .. } | Ev::Removed(a) => {
                alive.retain(|x| x != a);
            }
            _ => {}
        }
    }
    alive.sort();
    alive
}

/// Node `i`'s own live set.
fn alive_set<S: Storage>(net: &Net<S>, i: usize) -> Vec<SocketAddr> {
    let mut alive: Vec<SocketAddr> = net
        .node(i)
        .endpoints()
        .filter(|p| p.is_alive())
        .map(|p| p.addr())
        .collect();
    alive.sort();
    alive
}

/// Every running node's events, followed from its start, give its live set
/// (between two steps, when every node has drained its events).
fn assert_followers_agree<S: Storage>(net: &Net<S>, when: &str) {
    for i in (0..net.nodes.len()).filter(|i| net.nodes[*i].is_some()) {
        assert_eq!(
            followed(net, i),
            alive_set(net, i),
            "node {i}'s events disagree with its live set {when} (at {:?})",
            net.now
        );
    }
}

#[test]
fn events_followed_from_the_start_give_the_live_set_through_restarts() {
    let mut net = net(5);
    let converged = net.run_until(Duration::from_secs(30), |n| {
        assert_followers_agree(n, "while joining");
        n.converged()
    });
    assert!(converged);
    // Node 3 restarts before anyone convicts it: its seed hears the new
    // generation from it first-hand (alive all along), the others second-
    // or first-hand.
    let r = 3;
    net.nodes[r] = None;
    net.run_for(Duration::from_millis(300));
    assert!(net.node(0).endpoint(&addr(r)).unwrap().is_alive());
    net.nodes[r] = Some(net.make(r, config(), GEN + 100, &[addr(0)]));
    // A new node, followed from its start.
    net.events[r].clear();
    let restarted = Ev::Restarted {
        endpoint: addr(r),
        generation: GEN + 100,
    };
    let seen = net.run_until(Duration::from_secs(30), |n| {
        assert_followers_agree(n, "during the restart");
        (0..5).filter(|i| *i != r).all(|i| {
            n.saw(i, &restarted).is_some()
                && n.node(i).endpoint(&addr(r)).is_some_and(|p| {
                    p.is_alive() && p.state().generation() == Generation(GEN + 100)
                })
        })
    });
    assert!(seen);
    // It restarts again and dies before most have heard from it: whoever
    // learned the new generation second-hand marks that incarnation down
    // too.
    net.nodes[r] = Some(net.make(r, config(), GEN + 200, &[addr(0)]));
    net.events[r].clear();
    let learned = net.run_until(Duration::from_secs(10), |n| {
        n.node(0)
            .endpoint(&addr(r))
            .is_some_and(|p| p.state().generation() == Generation(GEN + 200))
    });
    assert!(learned);
    net.nodes[r] = None;
    let convicted = net.run_until(Duration::from_secs(120), |n| {
        assert_followers_agree(n, "after the second restart");
        (0..5).filter(|i| *i != r).all(|i| {
            n.node(i)
                .endpoint(&addr(r))
                .is_none_or(|p| p.liveness() == Liveness::Down)
        })
    });
    assert!(convicted);
    net.run_for(Duration::from_secs(10));
    assert_followers_agree(&net, "at the end");
}
