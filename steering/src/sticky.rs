//! The steering manifest's pathway order, with stickiness: a pure function
//! of (the ranker's answer, the session's edges, the pathways the player
//! says it is on). No IO, no clock.
//!
//! A player stays on its current pathway unless there is a reason to move
//! it. The current pathway is kept first when its edge
//! - is still named by the ranker (so it is `up`, or `overloaded` only
//!   when every edge is; never `down` or `draining`),
//! - is not over the bounded-load limit of its site, and
//! - is in the same preference tier as the edge that would be first: the
//!   same reason (ISP, geo, fallback, overloaded) and the same site.
//!
//! So within a site neither rendezvous order nor the content digest moves
//! a playing client (both may differ between polls without anything
//! having got worse), while a better tier does: a client sitting on a geo
//! or fallback edge moves back to its ISP's edge when that edge is up
//! again, and to a nearer site when that site returns. A new session (no
//! current pathway) gets the ranker's order unchanged.

use crate::manifest::pathway_id;
use crate::rank::{Edge, Ranked};

/// Does the player's current edge `cur` stay ahead of `first`?
fn keeps(edges: &[Edge], cur: &Ranked, first: &Ranked) -> bool {
    !cur.over_bounded_load && cur.reason == first.reason && edges[cur.index].site == edges[first.index].site
}

/// The pathway ids of a session, best first.
///
/// `ranked` is the ranker's answer over `edges` (indices into it);
/// `session` the session's edge ids; `current` the player's pathways
/// (`PlayerState::pathways`, first is current; unknown ids are ignored).
/// Session edges the ranker names come first in its order (with the
/// player's edge moved first when it keeps its place, see the module
/// docs); session edges it no longer names (down, draining, overloaded)
/// follow in the session's order.
pub fn priority(edges: &[Edge], ranked: &[Ranked], session: &[String], current: &[String]) -> Vec<String> {
    let mut named: Vec<&Ranked> = ranked
        .iter()
        .filter(|r| edges.get(r.index).is_some_and(|e| session.contains(&e.id)))
        .collect();
    if let Some(&first) = named.first() {
        // The first listed pathway the player uses that keeps its place.
        let kept = current.iter().find_map(|p| {
            named
                .iter()
                .position(|r| pathway_id(&edges[r.index].id) == *p)
                .filter(|&at| keeps(edges, named[at], first))
        });
        if let Some(at) = kept {
            let cur = named.remove(at);
            named.insert(0, cur);
        }
    }
    let mut order: Vec<&str> = named.iter().map(|r| edges[r.index].id.as_str()).collect();
    for e in session {
        if !order.contains(&e.as_str()) {
            order.push(e);
        }
    }
    order.into_iter().map(pathway_id).collect()
}

#[cfg(test)]
mod tests {
    use outpost_proto::EdgeState;

    use super::*;
    use crate::manifest::player_state;
    use crate::rank::tests::{edge, AMS, FRA, NYC};
    use crate::rank::{parse_prefix, rank, Client, Policy};

    /// Two edges in the client's ISP site (ams), one geo site near it
    /// (fra), one far away (nyc).
    fn world() -> Vec<Edge> {
        let mut w = vec![
            edge("ams-1", "ams", AMS.0, AMS.1),
            edge("ams-2", "ams", AMS.0, AMS.1),
            edge("fra-1", "fra", FRA.0, FRA.1),
            edge("nyc-1", "nyc", NYC.0, NYC.1),
        ];
        for e in &mut w[..2] {
            e.prefixes = vec![parse_prefix("127.76.1.0/24").unwrap()];
        }
        w
    }

    fn client() -> Client {
        Client {
            ip: Some("127.76.1.5".parse().unwrap()),
            lat: Some(AMS.0),
            lon: Some(AMS.1),
            ..Default::default()
        }
    }

    fn session(w: &[Edge]) -> Vec<String> {
        w.iter().map(|e| e.id.clone()).collect()
    }

    /// The steering order for a player on `current` (a query string).
    fn order(w: &[Edge], query: &str) -> Vec<String> {
        let ranked = rank(w, &client(), "t1", &Policy::default());
        priority(w, &ranked, &session(&world()), &player_state(Some(query)).pathways)
    }

    /// The ams edge rendezvous puts first for "t1", and the other one.
    fn ams_order(w: &[Edge]) -> (String, String) {
        let o = order(w, "");
        assert!(o[0].starts_with("ams") && o[1].starts_with("ams"), "{o:?}");
        (o[0].clone(), o[1].clone())
    }

    fn index(w: &[Edge], id: &str) -> usize {
        w.iter().position(|e| e.id == id).unwrap()
    }

    #[test]
    fn without_a_current_pathway_the_rankers_order_stands() {
        let w = world();
        let (first, second) = ams_order(&w);
        assert_eq!(order(&w, ""), [first.as_str(), &second, "fra-1", "nyc-1"]);
        assert_eq!(order(&w, "_HLS_throughput=100"), order(&w, ""));
    }

    #[test]
    fn a_healthy_current_edge_in_the_same_site_is_kept() {
        let mut w = world();
        let (first, second) = ams_order(&w);
        assert_eq!(
            order(&w, &format!("_HLS_pathway={second}")),
            [second.as_str(), &first, "fra-1", "nyc-1"]
        );
        assert_eq!(order(&w, &format!("_HLS_pathway={first}")), order(&w, ""));
        // The other edge's digest now holds the title (the ranker prefers
        // it): still no reason to move a player that is on the first one.
        let f = index(&w, &first);
        let s = index(&w, &second);
        w[s].titles = vec!["t1".into()];
        assert_eq!(order(&w, "")[0], second);
        assert_eq!(order(&w, &format!("_HLS_pathway={first}"))[0], first);
        // ... and the digest flipping back and forth changes nothing.
        w[s].titles.clear();
        w[f].titles = vec!["t1".into()];
        assert_eq!(order(&w, &format!("_HLS_pathway={second}"))[0], second);
        // Loads that differ but stay under the bounded-load limit: kept.
        w[s].load = 0.11;
        w[f].load = 0.09;
        assert_eq!(order(&w, &format!("_HLS_pathway={second}"))[0], second);
        // Near idle, load differences are noise (under the floor): kept.
        w[s].load = 0.08;
        w[f].load = 0.001;
        assert_eq!(order(&w, &format!("_HLS_pathway={second}"))[0], second);
    }

    #[test]
    fn a_current_edge_that_got_worse_is_left() {
        let (first, second) = ams_order(&world());
        let on_second = format!("_HLS_pathway={second}");
        for (what, state) in [
            ("down", EdgeState::Down),
            ("draining", EdgeState::Draining),
            ("overloaded", EdgeState::Overloaded),
        ] {
            let mut w = world();
            let s = index(&w, &second);
            w[s].state = state;
            assert_eq!(
                order(&w, &on_second),
                [first.as_str(), "fra-1", "nyc-1", &second],
                "{what}: the player moves; its edge goes last"
            );
        }
        // Over the bounded-load limit (1.25 x the site's mean): moved.
        let mut w = world();
        let s = index(&w, &second);
        w[s].load = 0.5;
        let o = order(&w, &on_second);
        assert_eq!(o[0], first, "{o:?}");
        assert_eq!(o[1], second, "still named, just not first: {o:?}");
        // At the limit exactly: kept.
        let f = index(&w, &first);
        w[s].load = 0.125;
        w[f].load = 0.075;
        assert_eq!(order(&w, &on_second)[0], second);
    }

    #[test]
    fn every_edge_overloaded_keeps_the_player_where_it_is() {
        let mut w = world();
        let (_, second) = ams_order(&w);
        for e in &mut w {
            e.state = EdgeState::Overloaded;
        }
        assert_eq!(order(&w, &format!("_HLS_pathway={second}"))[0], second);
    }

    #[test]
    fn a_better_tier_wins_over_stickiness() {
        // Both ams edges down: the player went to fra (geo).
        let mut w = world();
        let (first, second) = ams_order(&w);
        for e in &mut w[..2] {
            e.state = EdgeState::Down;
        }
        assert_eq!(order(&w, "")[0], "fra-1");
        // The ISP's edges are back: the player on fra moves back to them.
        let w = world();
        assert_eq!(
            order(&w, "_HLS_pathway=fra-1"),
            [first.as_str(), &second, "fra-1", "nyc-1"]
        );
        // A player on the far geo site (nyc) moves to the nearer one (fra)
        // when its ISP's site is still gone.
        let mut w = world();
        for e in &mut w[..2] {
            e.state = EdgeState::Down;
        }
        assert_eq!(order(&w, "_HLS_pathway=nyc-1")[0], "fra-1");
        // A fallback site is left for the ISP's site too.
        let w = world();
        let ranked = rank(
            &w,
            &client(),
            "t1",
            &Policy {
                fallback_sites: vec!["fra".into()],
                ..Default::default()
            },
        );
        let o = priority(&w, &ranked, &session(&w), &["fra-1".into()]);
        assert_eq!(o[0], first);
    }

    #[test]
    fn unknown_and_foreign_pathways_are_ignored() {
        let w = world();
        let plain = order(&w, "");
        assert_eq!(order(&w, "_HLS_pathway=nope"), plain);
        assert_eq!(order(&w, "_HLS_pathway="), plain);
        assert_eq!(order(&w, "_DASH_pathway=%22%22"), plain);
        // An edge of the world that is not one of the session's pathways.
        let (first, second) = ams_order(&w);
        let ranked = rank(&w, &client(), "t1", &Policy::default());
        let sess = vec![first.clone(), "fra-1".to_string()];
        assert_eq!(
            priority(&w, &ranked, &sess, std::slice::from_ref(&second)),
            [first.as_str(), "fra-1"]
        );
        // Session edges the ranker no longer knows at all still go last.
        let sess = vec!["gone".to_string(), second.clone()];
        assert_eq!(
            priority(&w, &ranked, &sess, &["gone".into()]),
            [second.as_str(), "gone"]
        );
        assert_eq!(priority(&w, &[], &sess, &[]), ["gone", second.as_str()]);
        // Indices out of range are skipped, not a panic.
        let bad = vec![Ranked { index: 99, ..ranked[0] }];
        assert_eq!(
            priority(&w, &bad, &sess, std::slice::from_ref(&second)),
            ["gone", second.as_str()]
        );
    }

    #[test]
    fn quoted_and_comma_list_forms() {
        let mut w = world();
        let (first, second) = ams_order(&w);
        let want = [second.as_str(), &first, "fra-1", "nyc-1"];
        assert_eq!(order(&w, &format!("_DASH_pathway=%22{second}%22")), want);
        assert_eq!(order(&w, &format!("_DASH_pathway=\"{second}\"")), want);
        assert_eq!(order(&w, &format!("_DASH_pathway=%22{second},{first}%22")), want);
        assert_eq!(order(&w, &format!("_DASH_pathway=%22{second}%22,%22{first}%22")), want);
        // The first listed pathway that keeps its place wins: an unknown or
        // worse first entry does not hide a healthy second one.
        assert_eq!(order(&w, &format!("_DASH_pathway=%22nope,{second}%22")), want);
        let s = index(&w, &second);
        w[s].state = EdgeState::Down;
        assert_eq!(
            order(&w, &format!("_DASH_pathway=%22{second},fra-1%22"))[0],
            first,
            "fra-1 is a worse tier than the first ams edge"
        );
    }

    #[test]
    fn pathway_ids_are_compared_normalized() {
        let mut w = world();
        w[0].id = "ams 1".into();
        w[1].id = "ams 2".into();
        let ranked = rank(&w, &client(), "t1", &Policy::default());
        let sess = session(&w);
        let plain = priority(&w, &ranked, &sess, &[]);
        assert!(plain[0].starts_with("ams-"), "{plain:?}");
        let other = plain[1].clone();
        assert_eq!(priority(&w, &ranked, &sess, std::slice::from_ref(&other))[0], other);
    }
}
