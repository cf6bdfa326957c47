//! Scripts of operations against the pure office pool on a fake clock (SPEC §4, §5).
//!
//! Each script is plain text, one step a line, read by the small interpreter at the bottom:
//!
//! ```text
//! office custom_quota=6 random_batch=3        settings of the office (before the first step)
//! at 8s custom a1 Z9999 A0012 => claimed A0012 a step: when, what, and what it must answer
//! expect records: app a1 claimed ...; audit … what the last step persisted (any order)
//! ```
//!
//! Times: `8s`, `90s`, `1h`, `7d`, `3600000` are since the script's start (Monday
//! 2024-03-04T09:00 office time); `+1s` is after the previous step; `2024-03-08T23:59:59` is office
//! local time. Serials may name what a draw gave: `a1.b2` is the 2nd number of a1's last batch,
//! `a1.c1` the first of its candidates as the last draw or pick showed them. An answer matches when it starts with the expectation (up to a word
//! boundary); `...` stands for any text. A step without `=>` must not be refused.
//!
//! Before every step the clock ticks (as the actor does at each deadline); after every step the
//! pool's invariants are checked, a refused step must have persisted nothing and told nothing, a
//! draw or pick must have persisted no number (holds are never persisted), a practice application
//! persists nothing at all, and every application record persisted equals the live application.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::SeedableRng;

use common::{local_ms, local_text};
use platepool_engine::calendar::ServiceHours;
use platepool_engine::plate::char_index;
use platepool_engine::pool::{Check, ClassStats, Counts, Effects, Event, NewRelease, OfficePool};
use platepool_engine::record::{NumberState, Record};
use platepool_engine::rules::DenyRule;
use platepool_engine::{Energy, OfficeConfig, Pattern, Refusal, ReleaseSource, Serial};

// ---------------------------------------------------------------------------------------------
// R4.5 custom selection

const CUSTOM_CLAIMS_FIRST_AVAILABLE: &str = r"
office custom_quota=6 custom_per_check=3
at 0 release small A000# => release 1 10
app a1 small fuel
app a2 small fuel
app a3 small fuel
verify a1
verify a2
verify a3
// a3's batch takes every open number, so A0000–A0009 are all held by a3
draw a3 => batch 10 r=4
release small A00[1-9]# => release 2 90
// the first check may come custom_min_interval after verification
at +7999 custom a1 A0012 => refused too_soon 1
at 8s custom a1 Z9999 A0012 A0013 => claimed A0012
expect records: number A0012 claimed a1; app a1 claimed c=4 r=5; audit custom_claim
expect events: claimed a1 A0012 by 2024-03-07T23:59:59
expect app a1 state=claimed c=4 r=5 claim=A0012 void=false
expect owner A0012 a1
expect stats small available=89 held=10 claimed=1
// none available: the check costs all it named and says why each failed
custom a2 A0012 A0005 Z9999 => none A0012:taken A0005:held Z9999:not_in_pool c=3
expect records: app a2 selecting c=3 r=5; audit custom_check_failed
expect events: none
expect app a2 state=selecting c=3 next_check=16s
// custom_min_interval after the previous check, to the millisecond
at +1s custom a2 A0050 => refused too_soon 7000
expect app a2 c=3
at +6999 custom a2 A0050 => refused too_soon 1
at +1 custom a2 A0012 A0050 A0051 => claimed A0050
expect app a2 state=claimed c=1
expect owner A0051 none
// a number the application holds itself is available to it; the claim frees the rest of the batch
at 30s custom a3 A0012 A0007 => claimed A0007
expect app a3 state=claimed c=4 r=4 batch=0 cand=0
expect stats small held=0 claimed=3 available=97
expect owner A0006 none
";

const CUSTOM_REFUSALS_COST_NOTHING: &str = r"
office custom_quota=4 custom_per_check=3 deny=three_identical_digits custom_patterns.small=#####,@####
at 0 release small A0### => release 1 1000
release small_new_energy D000## F000## => release 2 200
app a1 small fuel
app e1 small_new_energy bev
verify a1
verify e1
at 8s custom a1 => refused bad_request: a check names at least one number
custom a1 A0123 A0567 A0568 A0569 => refused too_many_numbers 3
custom a1 A0123 a0123 => refused bad_request: plates[1]: A0123 is named twice
custom a1 A01I3 => refused invalid_plate 0 at 4
custom a1 A0123 A012 => refused invalid_plate 1 at 5
custom a1 D00012 => refused invalid_plate 0 at 6
custom a1 A0111 => refused not_allowed 0 A0111: ... three identical digits in a row
custom a1 AB123 => refused not_allowed 0 AB123: ... matches none of the allowed shapes #####, @####
// the rules are checked before anything is looked up: an available number first saves nothing
custom a1 A0123 A0999 => refused not_allowed 1 A0999: ... three identical digits
custom e1 F00012 => refused not_allowed 0 F00012: a bev vehicle takes numbers of the shape D*####
custom e1 X00012 => refused invalid_plate 0 at 1
custom e1 D001 => refused invalid_plate 0 at 5
expect app a1 state=confirmed c=4 next_check=8s
expect app e1 state=confirmed c=4
// three misses cost three
custom a1 Z1234 Z5678 Z1357 => none Z1234:not_in_pool Z5678:not_in_pool Z1357:not_in_pool c=1
at +8s custom a1 A0123 A0567 => refused too_many_numbers 1
custom a1 Z2468 => none Z2468:not_in_pool c=0
at +8s custom a1 A0123 => refused quota_spent
expect app a1 c=0 state=selecting
// with the custom quota spent the flow moves to random selection
draw a1 => batch 10 r=4
";

// ---------------------------------------------------------------------------------------------
// R2.2 energy groups

const ENERGY_GROUPS: &str = r"
at 0 release small_new_energy D000## => release 1 100
app e1 small_new_energy bev
app e2 small_new_energy phev
app e3 small_new_energy fcev
app x1 small_new_energy fuel => refused vehicle_not_eligible: a fuel vehicle cannot have a small_new_energy plate
verify e1
verify e2
verify e3
// only D numbers are open: other new-energy vehicles find nothing, and pay nothing
draw e2 => refused not_available
expect app e2 r=5 state=confirmed
release small_new_energy F000## => release 2 100
draw e1 => batch 10 r=4
expect batch e1 matches D000##
draw e2 => batch 10 r=4
expect batch e2 matches F000##
draw e3 => batch 10 r=4
expect batch e3 matches F000##
expect batch e2 disjoint e3
at 8s custom e1 F00012 => refused not_allowed 0 F00012: a bev vehicle takes ...
custom e3 D00012 => refused not_allowed 0 D00012: a fcev vehicle takes numbers of the shape F*####
custom e1 e2.b1 D00033 => refused not_allowed 0
expect app e1 c=20
custom e1 D00033 => claimed D00033
";

// ---------------------------------------------------------------------------------------------
// R4.6 random selection

const DRAW_BATCHES: &str = r"
office random_batch=10 random_quota=4
at 0 release small A000[0-3] => release 1 4
app a1 small fuel
app a2 small fuel
verify a1
verify a2
// min(random_batch, available)
draw a1 => batch 4 r=3
expect records: app a1 selecting c=20 r=3; audit draw
expect stats small available=0 held=4
expect batch a1 matches A000[0-3]
draw a2 => refused not_available
expect app a2 r=4 state=confirmed
// a new draw releases the previous batch: the same four come back
draw a1 => batch 4 r=2
expect stats small held=4
pick a1 a1.b2 => candidates 1
// except the candidate: three are left to draw
draw a1 => batch 3 r=1
expect app a1 batch=3 cand=1
expect stats small held=4
draw a1 => batch 3 r=0
draw a1 => refused quota_spent
expect app a1 r=0 state=selecting batch=3 cand=1
// two applications share twenty numbers: each holds ten, none twice
release small A001# A002# => release 2 20
draw a2 => batch 10 r=3
expect batch a2 disjoint a1
expect stats small held=14 available=10
";

// R4.14 draws are paced: every draw that passes validation starts the interval, found or not
const DRAW_PACING: &str = r"
office random_batch=2 random_quota=3 random_ttl=2s random_min_interval=1s
at 0 release small A000[0-1] => release 1 2
app a1 small fuel
app a2 small fuel
verify a1
verify a2
draw a1 => batch 2 r=2
// nothing left for a2: refused, nothing debited, but the interval starts and is persisted
at +100 draw a2 => refused not_available
expect records: app a2 confirmed c=20 r=3
expect app a2 r=3 state=confirmed
// polling sooner gets the time left and changes nothing
at +999 draw a2 => refused too_soon 1
expect app a2 r=3 state=confirmed
// a1's batch expires at 2s: the first draw after it takes the numbers back
at 2s draw a2 => batch 2 r=2
at +500 draw a2 => refused too_soon 500
at +500 draw a2 => batch 2 r=1
at +1 draw a2 => refused too_soon 999
at +999 draw a2 => batch 2 r=0
// a spent quota is told first, whatever the interval
at +1 draw a2 => refused quota_spent
";

const CANDIDATES: &str = r"
office random_batch=5 random_quota=3
at 0 release small A00## => release 1 100
app a1 small fuel
verify a1
draw a1 => batch 5 r=2
at 10s pick a1 a1.b2 => candidates 1
expect records: audit pick_candidate
expect app a1 batch=4 cand=1 picked=true cand_expires=190s
// one candidate per batch
pick a1 a1.b3 => refused already_picked
pick a1 a1.b2 => refused conflict: ... is already a candidate
pick a1 Z9999 => refused not_held
pick a1 A0O01 => refused invalid_plate 0 at 3
// only a candidate can be confirmed
claim a1 a1.b3 => refused not_held
claim a1 Z9999 => refused not_held
claim a1 A0O01 => refused invalid_plate 0 at 3
at 20s draw a1 => batch 5 r=1
expect app a1 batch=5 cand=1 picked=false cand_expires=200s
pick a1 a1.b1 => candidates 2
expect stats small held=6
// confirming one candidate claims it and releases every other hold
claim a1 a1.c2 => claimed a1.b1
expect records: number a1.b1 claimed a1; app a1 claimed c=20 r=1; audit claim
expect events: claimed a1 a1.b1 by 2024-03-07T23:59:59
expect app a1 state=claimed batch=0 cand=0
expect stats small held=0 claimed=1 available=99
draw a1 => refused wrong_state claimed
pick a1 a1.b2 => refused wrong_state claimed
claim a1 a1.b1 => refused wrong_state claimed
at +8s custom a1 A0000 => refused wrong_state claimed
verify a1 => refused wrong_state claimed
";

const COUNTDOWNS: &str = r"
office random_ttl=90s candidate_ttl=180s
at 0 release small A00## => release 1 100
app a1 small fuel
app a2 small fuel
verify a1
verify a2
at 0 draw a1 => batch 10 r=4
expect app a1 batch_expires=90s
expect deadline 90s
at 10s pick a1 a1.b1 => candidates 1
expect app a1 cand_expires=190s
at 89999 tick
expect app a1 batch=9 cand=1
expect stats small held=10
// the batch expires back into the pool; the candidate stays
at 90s tick
expect app a1 batch=0 cand=1
expect stats small held=1 available=99
expect owner a1.b2 none
pick a1 a1.b2 => refused hold_expired
// a draw restarts the candidate countdown
at 100s draw a1 => batch 10 r=3
expect app a1 cand_expires=280s
at 200s tick
expect app a1 cand=1
at 280s claim a1 a1.c1 => refused hold_expired
expect app a1 cand=0 state=selecting r=3
expect stats small held=0
// a pick restarts it as well
at 300s draw a2 => batch 10 r=4
at 310s pick a2 a2.b1 => candidates 1
at 320s draw a2 => batch 10 r=3
at 360s pick a2 a2.b2 => candidates 2
expect app a2 cand_expires=540s
at 539999 claim a2 a2.c1 => claimed
expect app a2 state=claimed
";

const RANDOM_ONLY_PERIOD: &str = r"
at 0 release small A000# opens 0 custom_from 7d => release 1 10
app a1 small fuel
app a2 small fuel
verify a1
verify a2
// custom checks cannot take the numbers yet, and the keyboard does not offer them
at 8s custom a1 A0003 => none A0003:not_in_pool c=19
keyboard a1 _____ => - - - - -
// draws can
draw a2 => batch 10 r=4
expect batch a2 matches A000#
expect deadline 98s
at 7d-1 tick
keyboard a1 _____ => - - - - -
at 7d tick
keyboard a1 _____ => A 0 0 0 0123456789
keyboard a1 A00_7 => A 0 0 0 0123456789
verify a1
at +8s custom a1 A0003 => claimed A0003
keyboard a1 _____ => A 0 0 0 012456789
";

const RELEASE_OPENING: &str = r"
at 0 release small A00## opens 1h => release 1 100
expect stats small pending=100 available=0
expect release 1 pending=100
expect deadline 1h
app a1 small fuel
verify a1
// before it opens a release is neither drawable nor visible
draw a1 => refused not_available
expect app a1 r=5
at 8s custom a1 A0012 => none A0012:not_in_pool c=19
keyboard a1 _____ => - - - - -
at 1h-1 tick
expect stats small pending=100
at 1h tick
expect stats small pending=0 available=100
expect deadline none
verify a1
draw a1 => batch 10 r=4
keyboard a1 A00__ => A 0 0 0123456789 0123456789
";

// ---------------------------------------------------------------------------------------------
// R4.7 exhaustion

const EXHAUSTION: &str = r"
office custom_quota=1 random_quota=1 random_batch=2
at 0 release small A00## => release 1 100
app a1 small fuel
app a2 small fuel
verify a1
verify a2
at 8s custom a1 Z9999 => none Z9999:not_in_pool c=0
expect app a1 state=selecting
custom a1 A0012 => refused quota_spent
draw a1 => batch 2 r=0
draw a1 => refused quota_spent
// both quotas are spent, but holds are live: not exhausted yet
expect app a1 state=selecting
pick a1 a1.b1 => candidates 1
at 98s tick
expect app a1 state=selecting batch=0 cand=1
// the last hold expires: exhausted
at 188s-1 tick
expect records: none
at 188s tick
expect records: app a1 exhausted c=0 r=0; audit exhausted
expect app a1 state=exhausted
draw a1 => refused exhausted
custom a1 A0001 => refused exhausted
verify a1 => refused exhausted
claim a1 a1.b1 => refused exhausted
// spending the last quota with nothing held exhausts at once
at 200s draw a2 => batch 2 r=0
at 290s tick
expect app a2 state=selecting batch=0
custom a2 A0012 A0013 => refused too_many_numbers 1
custom a2 a2.b1 => claimed a2.b1
expect app a2 state=claimed c=0 r=0
app a3 small fuel
verify a3
draw a3 => batch 2
at +90s tick
at +1 custom a3 Z9999 => none Z9999:not_in_pool c=0
expect records: app a3 exhausted c=0 r=0; audit exhausted; audit custom_check_failed
";

// ---------------------------------------------------------------------------------------------
// R4.10 register, R4.11 lapse and void

const REGISTER_VOID_LAPSE: &str = r"
office holidays=2024-03-06
at 0 release small A00## => release 1 100
app a1 small fuel
app a2 small fuel
app a3 small fuel user u3
app a4 small fuel
verify a1
verify a2
verify a3
// Monday: Tuesday counts, Wednesday is a holiday, Thursday and Friday count
at 8s custom a1 A0012 => claimed A0012
expect events: claimed a1 A0012 by 2024-03-08T23:59:59
custom a2 A0013 => claimed A0013
custom a3 A0014 => claimed A0014
expect deadline 2024-03-08T23:59:59
at 1h register 粤K·A0012 => registered a1
expect records: number A0012 issued a1; app a1 issued; audit register
expect app a1 state=issued
expect owner A0012 a1
expect stats small issued=1 claimed=2 available=97
register A0012 => refused number_busy issued
void A0012 => refused number_busy issued
register A0050 => refused number_busy available
register Z9999 => refused unknown_number
register A00I2 => refused invalid_plate 0 at 4
// void at the owner's request: the number returns, nobody is blacklisted
void a0013 => voided a2
expect records: number A0013 back; app a2 voided; audit void
expect events: none
expect owner A0013 none
void A0013 => refused number_busy available
// the deadline passes without registration: the claim lapses and the user is blacklisted
at 2024-03-08T23:59:58 tick
expect app a3 state=claimed
expect events: none
at 2024-03-08T23:59:59 tick
expect events: lapsed a3 u3 until 2026-03-08T23:59:59
expect records: number A0014 back; app a3 lapsed; audit lapse
expect app a3 state=lapsed
expect owner A0014 none
expect stats small available=99 issued=1 claimed=0
register A0014 => refused number_busy available
// the lapsed and voided numbers are in the pool again; a Saturday claim counts from Monday
at +8s verify a4
at +8s custom a4 A0014 A0013 => claimed A0014
expect events: claimed a4 A0014 by 2024-03-13T23:59:59
";

// ---------------------------------------------------------------------------------------------
// R5.2 withdraw

const WITHDRAW: &str = r"
office random_batch=3
at 0 release small A000# => release 1 10
release small A001# opens 1h => release 2 10
app a1 small fuel
app a2 small fuel
verify a1
verify a2
at 8s custom a2 A0005 => claimed A0005
draw a1 => batch 3 r=4
withdraw a1.b1 => refused number_busy held
withdraw A0005 => refused number_busy claimed
withdraw Z9999 => refused unknown_number
withdraw A00I1 => refused invalid_plate 0 at 4
// a number not yet opened may be withdrawn
withdraw A0015 => withdrawn A0015
expect records: number A0015 withdrawn; audit withdraw_number
withdraw A0015 => refused number_busy withdrawn
// a whole release: held and claimed numbers stay with their holders
withdraw_release 1 => withdrawn 6
expect records: release 1 withdrawn; audit withdraw_release
expect release 1 withdrawn=6 held=3 claimed=1 available=0
expect app a1 batch=3
withdraw_release 1 => withdrawn 0
withdraw_release 9 => refused unknown_release
at +8s custom a2 A0001 => refused wrong_state claimed
// the batch cannot come back to a withdrawn release, so there is nothing to draw: nothing changes
draw a1 => refused not_available
expect app a1 r=4 batch=3
expect release 1 held=3
at 98s tick
expect release 1 withdrawn=9 claimed=1 held=0
expect app a1 batch=0
// a claim in a withdrawn release leaves the pool when it is voided
void A0005 => voided a2
expect records: number A0005 withdrawn; app a2 voided; audit void
expect release 1 withdrawn=10 claimed=0
at 1h tick
expect release 2 available=9 withdrawn=1
verify a1
at +8s custom a1 A0003 A0015 => none A0003:not_in_pool A0015:not_in_pool c=18
expect records: app a1 selecting ...; audit custom_check_failed
draw a1 => batch 3 r=3
expect batch a1 matches A001#
";

// ---------------------------------------------------------------------------------------------
// §3 service hours and maintenance, R4.4 identity

const SERVICE_HOURS_AND_MAINTENANCE: &str = r"
at 0 release small A00## => release 1 100
app a1 small fuel
verify a1
configure service_hours=08:00-20:00 => configured
expect records: config; audit configure
at 8s draw a1 => batch 10 r=4
pick a1 a1.b1 => candidates 1
at 2024-03-04T19:59 verify a1
at 2024-03-04T20:00 draw a1 => refused selection_closed until 2024-03-05T08:00:00
at +8s custom a1 A0012 => refused selection_closed until 2024-03-05T08:00:00
pick a1 A0012 => refused selection_closed
claim a1 A0012 => refused selection_closed
expect app a1 r=4 c=20
at 2024-03-05T07:59:59 draw a1 => refused selection_closed until 2024-03-05T08:00:00
at 2024-03-05T07:59:59 verify a1
at 2024-03-05T08:00 draw a1 => batch 10 r=3
configure maintenance=true => configured
draw a1 => refused selection_closed
expect app a1 r=3
configure maintenance=false service_hours=none => configured
at 2024-03-05T08:10 draw a1 => batch 10 r=2
";

const IDENTITY: &str = r"
at 0 release small A00## => release 1 100
app a1 small fuel
draw a1 => refused identity_not_verified
at 8s custom a1 A0012 => refused identity_not_verified
pick a1 A0012 => refused identity_not_verified
claim a1 A0012 => refused identity_not_verified
at 10s verify a1 => verified
expect records: app a1 confirmed c=20 r=5; audit verify_identity
// a verification lets the citizen select for 30 minutes
at 10s+30m-1 draw a1 => batch 10 r=4
at 10s+30m draw a1 => refused identity_not_verified
verify a1
draw a1 => batch 10 r=3
verify @999 => refused unknown_application
draw @999 => refused unknown_application
pick @999 A0012 => refused unknown_application
claim @999 A0012 => refused unknown_application
custom @999 A0012 => refused unknown_application
keyboard @999 _____ => refused unknown_application
keyboard a1 ______ => refused bad_request: entered has 6 characters
";

// ---------------------------------------------------------------------------------------------
// R4.13 practice

const PRACTICE: &str = r"
office random_batch=5
at 0 release small A000# => release 1 10
app a1 small fuel
app a2 small fuel
verify a1
verify a2
practice p1 small fuel => practice
practice p2 small_new_energy fuel => refused vehicle_not_eligible
draw p1 => batch 5 r=4
expect stats small available=10 held=0
pick p1 p1.b1 => candidates 1
expect stats small available=10 held=0
expect owner p1.b1 none
// the practice candidate was never really held
at 8s custom a1 p1.b1 => claimed p1.b1
// confirming it yields a void number and takes nothing
claim p1 p1.c1 => claimed p1.b1
expect app p1 state=claimed void=true
expect owner p1.b1 a1
expect stats small claimed=1 available=9 held=0
// practice checks are possible at once and take nothing either
practice p3 small fuel
custom p3 p1.b2 => claimed p1.b2
expect owner p1.b2 none
expect stats small claimed=1 available=9
// practice draws see the real availability: a real batch is out of reach
draw a2 => batch 5 r=4
practice p4 small fuel
draw p4 => batch 4 r=4
expect batch p4 disjoint a2
";

// ---------------------------------------------------------------------------------------------
// Operators' refusals (R5.1, R5.2)

const OPERATOR_REFUSALS: &str = r"
at 0 release truck A00## => refused unknown_class truck
release small A00 => refused invalid_release: patterns[0]: A00 is not inside the small shape *****
release small_new_energy X000## => refused invalid_release: patterns[0]: X000## is not inside
release small list B0001,D00001 => refused invalid_release: serials[1]: D00001 is not a small number
release small A00## => release 1 100
release small A000# => refused invalid_release: every number it names is already in the pool
release small list A0001,B0001 => release 2 1
expect release 2 available=1
configure random_batch=0 => refused invalid_config rules.random_batch: 0 is outside 1..=50
configure classes=small_new_energy => refused invalid_config classes: class small has released numbers
expect records: none
app a1 small fuel notice v0 => refused notice_not_accepted v1
// a class nobody released yet can be dropped: the office stops serving it
configure classes=small => configured
app e1 small_new_energy bev => refused vehicle_not_eligible: the office does not serve class small_new_energy
release small_new_energy D000## => refused unknown_class small_new_energy
configure classes=small,small_new_energy => configured
app e1 small_new_energy bev => app
release small_new_energy D000## => release 3 100
";

// ---------------------------------------------------------------------------------------------
// The tests

const SCRIPTS: &[(&str, &str)] = &[
    (
        "custom_claims_first_available",
        CUSTOM_CLAIMS_FIRST_AVAILABLE,
    ),
    ("custom_refusals_cost_nothing", CUSTOM_REFUSALS_COST_NOTHING),
    ("energy_groups", ENERGY_GROUPS),
    ("draw_batches", DRAW_BATCHES),
    ("draw_pacing", DRAW_PACING),
    ("candidates", CANDIDATES),
    ("countdowns", COUNTDOWNS),
    ("random_only_period", RANDOM_ONLY_PERIOD),
    ("release_opening", RELEASE_OPENING),
    ("exhaustion", EXHAUSTION),
    ("register_void_lapse", REGISTER_VOID_LAPSE),
    ("withdraw", WITHDRAW),
    (
        "service_hours_and_maintenance",
        SERVICE_HOURS_AND_MAINTENANCE,
    ),
    ("identity", IDENTITY),
    ("practice", PRACTICE),
    ("operator_refusals", OPERATOR_REFUSALS),
];

macro_rules! script_tests {
    ($($test:ident => $script:ident,)*) => {
        $(
            #[test]
            fn $test() {
                run_script(stringify!($test), $script);
            }
        )*
    };
}

script_tests! {
    custom_check_claims_the_first_available_and_debits_up_to_it => CUSTOM_CLAIMS_FIRST_AVAILABLE,
    custom_check_refusals_cost_nothing => CUSTOM_REFUSALS_COST_NOTHING,
    energy_groups_decide_the_numbers_offered => ENERGY_GROUPS,
    draws_take_min_of_batch_and_available_and_release_the_previous_batch => DRAW_BATCHES,
    draws_are_paced_whether_or_not_they_find_numbers => DRAW_PACING,
    one_candidate_per_batch_and_claim_releases_every_other_hold => CANDIDATES,
    holds_expire_and_candidate_countdown_restarts_on_draw_and_pick => COUNTDOWNS,
    random_only_period_hides_numbers_from_custom_checks => RANDOM_ONLY_PERIOD,
    releases_are_invisible_before_they_open => RELEASE_OPENING,
    exhausted_when_both_quotas_are_spent_and_no_hold_is_left => EXHAUSTION,
    register_void_and_lapse => REGISTER_VOID_LAPSE,
    withdrawn_numbers_and_releases_leave_when_holders_let_go => WITHDRAW,
    service_hours_and_maintenance_close_selection => SERVICE_HOURS_AND_MAINTENANCE,
    selection_needs_a_fresh_identity_verification => IDENTITY,
    practice_holds_and_claims_nothing_real => PRACTICE,
    operators_are_refused_with_reasons => OPERATOR_REFUSALS,
}

/// Every refusal the pool can give appears in some script.
#[test]
fn every_refusal_the_pool_gives_is_scripted() {
    let mut seen = BTreeSet::new();
    for (name, text) in SCRIPTS {
        seen.extend(run_script(name, text));
    }
    let pool_refusals = [
        "BadRequest",
        "InvalidPlate",
        "NotAllowed",
        "TooManyNumbers",
        "InvalidConfig",
        "InvalidRelease",
        "UnknownApplication",
        "UnknownRelease",
        "UnknownNumber",
        "UnknownClass",
        "QuotaSpent",
        "Exhausted",
        "NotAvailable",
        "HoldExpired",
        "NotHeld",
        "AlreadyPicked",
        "IdentityNotVerified",
        "SelectionClosed",
        "WrongState",
        "NumberBusy",
        "Conflict",
        "VehicleNotEligible",
        "NoticeNotAccepted",
        "TooSoon",
    ];
    let missing: Vec<&str> = pool_refusals
        .iter()
        .copied()
        .filter(|r| !seen.contains(r))
        .collect();
    assert!(missing.is_empty(), "refusals no script shows: {missing:?}");
}

/// The interpreter itself must be able to fail: a wrong expectation is caught.
#[test]
#[should_panic(expected = "answered")]
fn a_wrong_expectation_fails_the_script() {
    run_script(
        "wrong",
        "at 0 release small A00## => release 1 100\napp a1 small fuel\nverify a1\ndraw a1 => batch 9",
    );
}

#[test]
#[should_panic(expected = "answered")]
fn an_expectation_is_matched_to_a_word_boundary() {
    run_script("boundary", "at 0 release small A00## => release 1 10");
}

// ---------------------------------------------------------------------------------------------
// The interpreter

const WHO: &str = "operator:script";

/// Runs a script; panics with the script name and line at the first failed expectation. Returns
/// the names of the refusals seen.
fn run_script(name: &str, text: &str) -> BTreeSet<&'static str> {
    let mut harness: Option<Harness> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find("//") {
            Some(at) => &raw[..at],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let whence = format!("{name}:{}: {line}", i + 1);
        if let Some(settings) = line.strip_prefix("office") {
            assert!(harness.is_none(), "{whence}: office settings come first");
            harness = Some(Harness::new(settings, &whence));
            continue;
        }
        let h = harness.get_or_insert_with(|| Harness::new("", &whence));
        h.whence = whence;
        if let Some(what) = line.strip_prefix("expect ") {
            h.expect(what);
        } else {
            h.step(line);
        }
    }
    harness.map(|h| h.refusals).unwrap_or_default()
}

#[derive(Debug)]
struct Harness {
    pool: OfficePool,
    config: OfficeConfig,
    rng: StdRng,
    base: u64,
    now: u64,
    apps: HashMap<String, u64>,
    names: HashMap<u64, String>,
    practice: BTreeSet<u64>,
    batches: HashMap<u64, Vec<Serial>>,
    /// The candidate list as the last draw or pick of each application showed it.
    cands: HashMap<u64, Vec<Serial>>,
    effects: Effects,
    refusals: BTreeSet<&'static str>,
    whence: String,
}

impl Harness {
    fn new(settings: &str, whence: &str) -> Harness {
        let mut config = common::office();
        for setting in settings.split_whitespace() {
            apply_setting(&mut config, setting, whence);
        }
        let base = local_ms("2024-03-04T09:00");
        let pool = OfficePool::new("script", config.clone(), common::catalog()).expect("office");
        Harness {
            pool,
            config,
            rng: StdRng::seed_from_u64(7),
            base,
            now: base,
            apps: HashMap::new(),
            names: HashMap::new(),
            practice: BTreeSet::new(),
            batches: HashMap::new(),
            cands: HashMap::new(),
            effects: Effects::default(),
            refusals: BTreeSet::new(),
            whence: whence.to_string(),
        }
    }

    fn fail(&self, message: String) -> ! {
        panic!("{}\n  {message}", self.whence)
    }

    // ---- time

    /// `8s`, `1h-1`, `+8s`, `2024-03-08T23:59:59`.
    fn time(&self, text: &str) -> u64 {
        if text.len() >= 16 && text.as_bytes()[4] == b'-' {
            return local_ms(text);
        }
        let (from, expr) = match text.strip_prefix('+') {
            Some(rest) => (self.now, rest),
            None => (self.base, text),
        };
        let ms =
            from as i64 + duration(expr).unwrap_or_else(|| self.fail(format!("bad time {text}")));
        ms as u64
    }

    // ---- names

    fn seq(&self, name: &str) -> u64 {
        if let Some(n) = name.strip_prefix('@') {
            return n
                .parse()
                .unwrap_or_else(|_| self.fail(format!("bad application number {name}")));
        }
        *self
            .apps
            .get(name)
            .unwrap_or_else(|| self.fail(format!("no application {name}")))
    }

    fn name(&self, seq: u64) -> String {
        self.names
            .get(&seq)
            .cloned()
            .unwrap_or_else(|| format!("@{seq}"))
    }

    /// Replaces `a1.b2` (2nd number of a1's last batch) and `a1.c1` (a1's first candidate).
    fn resolve(&self, text: &str) -> String {
        let mut out = String::new();
        let mut word = String::new();
        for c in text.chars().chain(std::iter::once('\n')) {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                word.push(c);
                continue;
            }
            out.push_str(&self.resolve_word(&word));
            word.clear();
            if c != '\n' {
                out.push(c);
            }
        }
        out
    }

    fn resolve_word(&self, word: &str) -> String {
        let Some((app, which)) = word.split_once('.') else {
            return word.to_string();
        };
        let Some(&seq) = self.apps.get(app) else {
            return word.to_string();
        };
        let (list, n) = if let Some(n) = which.strip_prefix('b') {
            (self.batches.get(&seq).cloned().unwrap_or_default(), n)
        } else if let Some(n) = which.strip_prefix('c') {
            (self.cands.get(&seq).cloned().unwrap_or_default(), n)
        } else {
            self.fail(format!("bad reference {word}"))
        };
        let n: usize = n
            .parse()
            .unwrap_or_else(|_| self.fail(format!("bad reference {word}")));
        match list.get(n.wrapping_sub(1)) {
            Some(s) => s.to_string(),
            None => self.fail(format!("{word}: {app} has {} such numbers", list.len())),
        }
    }

    // ---- steps

    fn step(&mut self, line: &str) {
        let mut rest = line;
        if let Some(after) = rest.strip_prefix("at ") {
            let (when, op) = after.split_once(' ').unwrap_or((after, ""));
            let t = self.time(when);
            if t < self.now {
                self.fail(format!("time goes backwards to {}", local_text(t)));
            }
            self.now = t;
            rest = op;
        }
        let (op, expected) = match rest.split_once("=>") {
            Some((op, e)) => (op.trim(), Some(self.resolve(e.trim()))),
            None => (rest.trim(), None),
        };
        let words: Vec<String> = op.split_whitespace().map(|w| self.resolve(w)).collect();
        if words.is_empty() {
            self.fail("no operation".into());
        }
        self.pool.tick(self.now);
        let tick_effects = self.pool.take_effects();
        self.check_app_records(&tick_effects);
        let answer = self.run(&words);
        let effects = if words[0] == "tick" {
            tick_effects
        } else {
            self.pool.take_effects()
        };
        self.pool.check_invariants(self.now);
        self.check_app_records(&effects);
        let text = match &answer {
            Ok(text) => text.clone(),
            Err(r) => {
                self.refusals.insert(variant(r));
                // The one refusal that changes something: a paced draw that found nothing
                // starts the interval (R4.14), and persists only that.
                let paced_empty = words[0] == "draw"
                    && *r == Refusal::NotAvailable
                    && self.config.rules.random_min_interval_ms > 0
                    && effects
                        .records
                        .iter()
                        .all(|rec| matches!(rec, Record::Progress { .. }))
                    && effects.events.is_empty();
                if !effects.is_empty() && !paced_empty {
                    self.fail(format!(
                        "refused ({r}) but emitted {:?}",
                        self.summaries(&effects)
                    ));
                }
                format!("refused {}", self.refusal_text(r))
            }
        };
        if matches!(words[0].as_str(), "draw" | "pick")
            && effects
                .records
                .iter()
                .any(|r| matches!(r, Record::Number { .. }))
        {
            self.fail(format!(
                "a hold was persisted: {:?}",
                self.summaries(&effects)
            ));
        }
        let acting = words.get(1).and_then(|w| self.apps.get(w.as_str()));
        if acting.is_some_and(|s| self.practice.contains(s)) && !effects.is_empty() {
            self.fail(format!("practice emitted {:?}", self.summaries(&effects)));
        }
        match expected {
            Some(e) if !glob_match(&text, &e) => {
                self.fail(format!("answered `{text}`, expected `{e}`"))
            }
            None if answer.is_err() => self.fail(format!("answered `{text}`")),
            _ => {}
        }
        self.effects = effects;
    }

    fn run(&mut self, w: &[String]) -> Result<String, Refusal> {
        let now = self.now;
        let arg = |i: usize| -> &str { w.get(i).map(String::as_str).unwrap_or("") };
        match w[0].as_str() {
            "tick" => Ok("ok".into()),
            "release" => {
                let class = arg(1).to_string();
                let mut source = None;
                let mut patterns = Vec::new();
                let (mut opens, mut custom_from) = (now, None);
                let mut i = 2;
                while i < w.len() {
                    match w[i].as_str() {
                        "opens" => opens = self.time(arg(i + 1)),
                        "custom_from" => custom_from = Some(self.time(arg(i + 1))),
                        "list" => {
                            let serials = arg(i + 1).split(',').map(common::serial).collect();
                            source = Some(ReleaseSource::Serials(serials));
                        }
                        p => {
                            patterns.push(
                                Pattern::parse(p).unwrap_or_else(|e| self.fail(format!("{e:?}"))),
                            );
                            i -= 1;
                        }
                    }
                    i += 2;
                }
                let req = NewRelease {
                    class,
                    label: String::new(),
                    opens_at_ms: opens,
                    custom_from_ms: custom_from,
                    source: source.unwrap_or(ReleaseSource::Patterns(patterns)),
                };
                let (id, n) = self.pool.add_release(req, WHO, now)?;
                Ok(format!("release {id} {n}"))
            }
            "withdraw_release" => {
                let id = arg(1)
                    .parse()
                    .unwrap_or_else(|_| self.fail("bad release id".into()));
                Ok(format!(
                    "withdrawn {}",
                    self.pool.withdraw_release(id, WHO, now)?
                ))
            }
            "withdraw" => Ok(format!(
                "withdrawn {}",
                self.pool.withdraw_number(arg(1), WHO, now)?
            )),
            "app" | "practice" => {
                let name = arg(1).to_string();
                let class = arg(2);
                let energy =
                    Energy::parse(arg(3)).unwrap_or_else(|| self.fail("bad energy".into()));
                let mut req = common::application(&name, class, energy);
                for pair in w[4..].chunks(2) {
                    match pair[0].as_str() {
                        "notice" => req.notice_version = pair[1].clone(),
                        "user" => req.user = pair[1].clone(),
                        other => self.fail(format!("bad app option {other}")),
                    }
                }
                let practice = w[0] == "practice";
                let seq = if practice {
                    self.pool.create_practice(&req.user, class, energy, now)?
                } else {
                    self.pool.create_application(req, now)?
                };
                self.apps.insert(name.clone(), seq);
                self.names.insert(seq, name);
                if practice {
                    self.practice.insert(seq);
                    Ok("practice".into())
                } else {
                    Ok(format!("app {seq}"))
                }
            }
            "verify" => {
                self.pool.verify_identity(self.seq(arg(1)), now)?;
                Ok("verified".into())
            }
            "custom" => {
                let seq = self.seq(arg(1));
                let plates: Vec<String> = w[2..].to_vec();
                match self.pool.custom_check(seq, &plates, now, &mut self.rng)? {
                    Check::Claimed(c) => Ok(format!("claimed {}", c.serial)),
                    Check::NoneAvailable {
                        results,
                        custom_left,
                        ..
                    } => {
                        let why: Vec<String> = results
                            .iter()
                            .map(|(s, r)| format!("{s}:{}", r.as_str()))
                            .collect();
                        Ok(format!("none {} c={custom_left}", why.join(" ")))
                    }
                }
            }
            "draw" => {
                let seq = self.seq(arg(1));
                let no4 = match arg(2) {
                    "" => false,
                    "no4" => true,
                    other => self.fail(format!("bad draw option {other}")),
                };
                let d = self.pool.draw(seq, no4, now, &mut self.rng)?;
                let n = d.batch.serials.len();
                self.batches.insert(seq, d.batch.serials);
                self.cands
                    .insert(seq, d.candidates.map(|c| c.serials).unwrap_or_default());
                Ok(format!("batch {n} r={}", d.random_left))
            }
            "pick" => {
                let seq = self.seq(arg(1));
                let v = self.pool.pick_candidate(seq, arg(2), now)?;
                let n = v.serials.len();
                self.cands.insert(seq, v.serials);
                Ok(format!("candidates {n}"))
            }
            "claim" => {
                let seq = self.seq(arg(1));
                let c = self.pool.claim_candidate(seq, arg(2), now, &mut self.rng)?;
                Ok(format!("claimed {}", c.serial))
            }
            "register" => {
                let seq = self.pool.register(arg(1), WHO, now)?;
                Ok(format!("registered {}", self.name(seq)))
            }
            "void" => {
                let seq = self.pool.void(arg(1), "at the owner's request", WHO, now)?;
                Ok(format!("voided {}", self.name(seq)))
            }
            "configure" => {
                let mut config = self.config.clone();
                for setting in &w[1..] {
                    apply_setting(&mut config, setting, &self.whence);
                }
                self.pool.configure(config.clone(), WHO, now)?;
                self.config = config;
                Ok("configured".into())
            }
            "keyboard" => {
                let entered: Vec<Option<u8>> = arg(2)
                    .chars()
                    .map(|c| if c == '_' { None } else { char_index(c) })
                    .collect();
                let sets = self.pool.keyboard(self.seq(arg(1)), &entered)?;
                let shown: Vec<String> = sets
                    .iter()
                    .map(|s| {
                        if s.is_empty() {
                            "-".to_string()
                        } else {
                            s.to_chars()
                        }
                    })
                    .collect();
                Ok(shown.join(" "))
            }
            other => self.fail(format!("unknown operation {other}")),
        }
    }

    /// Every application record persisted is the application as it now stands; progress alone
    /// is persisted only when nothing else of the application changed.
    fn check_app_records(&self, effects: &Effects) {
        let mut last = HashMap::new();
        for r in &effects.records {
            match r {
                Record::App(a) => {
                    last.insert(a.seq, Ok(a));
                }
                Record::Progress { seq, progress } => {
                    last.insert(*seq, Err(progress));
                }
                _ => {}
            }
        }
        for (seq, rec) in last {
            let live = self
                .pool
                .application(seq, self.now)
                .expect("application read")
                .expect("persisted application exists");
            match rec {
                Ok(rec) if live.record != **rec => {
                    self.fail(format!("persisted {rec:?}\n  live {:?}", live.record));
                }
                Err(progress) if live.record.progress() != *progress => {
                    self.fail(format!(
                        "persisted {progress:?}\n  live {:?}",
                        live.record.progress()
                    ));
                }
                _ => {}
            }
        }
    }

    // ---- expectations

    fn expect(&self, what: &str) {
        let what = self.resolve(what);
        let (kind, rest) = what.split_once(' ').unwrap_or((what.as_str(), ""));
        match kind {
            "records:" => {
                let mut actual = self.summaries(&self.effects);
                actual.truncate(self.effects.records.len());
                self.expect_list("records", &actual, rest);
            }
            "events:" => {
                let actual: Vec<String> = self
                    .effects
                    .events
                    .iter()
                    .map(|e| self.event_text(e))
                    .collect();
                self.expect_list("events", &actual, rest);
            }
            "app" => {
                let mut words = rest.split_whitespace();
                let seq = self.seq(words.next().unwrap_or(""));
                let v = self
                    .pool
                    .application(seq, self.now)
                    .expect("application read")
                    .unwrap_or_else(|| self.fail("no such application".into()));
                for kv in words {
                    let (k, want) = kv
                        .split_once('=')
                        .unwrap_or_else(|| self.fail(format!("bad {kv}")));
                    let claim = v.record.claim.as_ref();
                    let got = match k {
                        "state" => v.record.state.as_str().to_string(),
                        "c" => v.record.custom_left.to_string(),
                        "r" => v.record.random_left.to_string(),
                        "batch" => v.batch.as_ref().map_or(0, |b| b.serials.len()).to_string(),
                        "cand" => v
                            .candidates
                            .as_ref()
                            .map_or(0, |b| b.serials.len())
                            .to_string(),
                        "picked" => v.batch_picked.to_string(),
                        "claim" => claim.map_or("none".into(), |c| c.serial.to_string()),
                        "void" => claim.is_some_and(|c| c.void).to_string(),
                        "batch_expires" | "cand_expires" | "next_check" => {
                            let got = match k {
                                "batch_expires" => v.batch.as_ref().map(|b| b.expires_at_ms),
                                "cand_expires" => v.candidates.as_ref().map(|b| b.expires_at_ms),
                                _ => Some(v.next_check_at_ms),
                            };
                            let want_ms = self.time(want);
                            if got != Some(want_ms) {
                                self.fail(format!(
                                    "{k}: {:?}, expected {}",
                                    got.map(local_text),
                                    local_text(want_ms)
                                ));
                            }
                            continue;
                        }
                        other => self.fail(format!("unknown app field {other}")),
                    };
                    if got != want {
                        self.fail(format!("app {k}={got}, expected {want}"));
                    }
                }
            }
            "stats" | "release" => {
                let mut words = rest.split_whitespace();
                let key = words.next().unwrap_or("");
                let stats = self.pool.stats();
                let counts = if kind == "stats" {
                    stats.iter().find(|s| s.class == key).map(|s| s.counts)
                } else {
                    find_release(&stats, key)
                }
                .unwrap_or_else(|| self.fail(format!("no {kind} {key}")));
                for kv in words {
                    let (k, want) = kv
                        .split_once('=')
                        .unwrap_or_else(|| self.fail(format!("bad {kv}")));
                    let got = match k {
                        "pending" => counts.pending,
                        "available" => counts.available,
                        "held" => counts.held,
                        "claimed" => counts.claimed,
                        "issued" => counts.issued,
                        "withdrawn" => counts.withdrawn,
                        other => self.fail(format!("unknown count {other}")),
                    };
                    if got.to_string() != want {
                        self.fail(format!(
                            "{kind} {key}: {k}={got}, expected {want} ({counts:?})"
                        ));
                    }
                }
            }
            "owner" => {
                let (serial, want) = rest.split_once(' ').unwrap_or((rest, "none"));
                let got = self
                    .pool
                    .owner_of(serial)
                    .expect("owner read")
                    .map_or("none".into(), |s| self.name(s));
                if got != want {
                    self.fail(format!("owner of {serial} is {got}, expected {want}"));
                }
            }
            "batch" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let seq = self.seq(words.first().copied().unwrap_or(""));
                let batch = self.batches.get(&seq).cloned().unwrap_or_default();
                match words.get(1..) {
                    Some(["matches", p]) => {
                        let p = common::pattern(p);
                        if let Some(s) = batch.iter().find(|s| !p.matches(**s)) {
                            self.fail(format!("{s} of the batch is outside {p}"));
                        }
                    }
                    Some(["disjoint", other]) => {
                        let other = self
                            .batches
                            .get(&self.seq(other))
                            .cloned()
                            .unwrap_or_default();
                        if let Some(s) = batch.iter().find(|s| other.contains(s)) {
                            self.fail(format!("{s} is in both batches"));
                        }
                    }
                    _ => self.fail("bad batch expectation".into()),
                }
            }
            "deadline" => {
                let want = if rest == "none" {
                    None
                } else {
                    Some(self.time(rest))
                };
                let got = self.pool.next_deadline_ms();
                if got != want {
                    self.fail(format!(
                        "next deadline {:?}, expected {:?}",
                        got.map(local_text),
                        want.map(local_text)
                    ));
                }
            }
            other => self.fail(format!("unknown expectation {other}")),
        }
    }

    /// `none` or `a; b; c`: each expected item matches a different actual one, in any order, and
    /// nothing else was emitted.
    fn expect_list(&self, what: &str, actual: &[String], expected: &str) {
        let expected: Vec<&str> = if expected.trim() == "none" {
            Vec::new()
        } else {
            expected.split(';').map(str::trim).collect()
        };
        let mut left: Vec<&String> = actual.iter().collect();
        for e in &expected {
            match left.iter().position(|a| glob_match(a, e)) {
                Some(i) => {
                    left.remove(i);
                }
                None => self.fail(format!("{what}: no `{e}` in {actual:?}")),
            }
        }
        if !left.is_empty() {
            self.fail(format!("{what}: unexpected {left:?}"));
        }
    }

    fn summaries(&self, effects: &Effects) -> Vec<String> {
        let mut out: Vec<String> = effects
            .records
            .iter()
            .map(|r| match r {
                Record::App(a) => format!(
                    "app {} {} c={} r={}",
                    self.name(a.seq),
                    a.state.as_str(),
                    a.custom_left,
                    a.random_left
                ),
                Record::Progress { seq, progress: p } => format!(
                    "app {} {} c={} r={}",
                    self.name(*seq),
                    p.state.as_str(),
                    p.custom_left,
                    p.random_left
                ),
                Record::Number { serial, state, .. } => match state {
                    Some(NumberState::Claimed { app }) => {
                        format!("number {serial} claimed {}", self.name(*app))
                    }
                    Some(NumberState::Issued { app }) => {
                        format!("number {serial} issued {}", self.name(*app))
                    }
                    Some(NumberState::Withdrawn) => format!("number {serial} withdrawn"),
                    None => format!("number {serial} back"),
                },
                Record::Release(r) => {
                    format!(
                        "release {}{}",
                        r.id,
                        if r.withdrawn { " withdrawn" } else { "" }
                    )
                }
                Record::Config(_) => "config".into(),
                Record::Audit(a) => format!("audit {}", a.action),
            })
            .collect();
        out.extend(effects.events.iter().map(|e| self.event_text(e)));
        out
    }

    fn event_text(&self, e: &Event) -> String {
        match e {
            Event::Claimed {
                app,
                serial,
                register_by_ms,
                ..
            } => format!(
                "claimed {} {serial} by {}",
                self.name(*app),
                local_text(*register_by_ms)
            ),
            Event::Lapsed {
                app,
                user,
                until_ms,
            } => {
                format!(
                    "lapsed {} {user} until {}",
                    self.name(*app),
                    local_text(*until_ms)
                )
            }
        }
    }

    fn refusal_text(&self, r: &Refusal) -> String {
        match r {
            Refusal::BadRequest(m) => format!("bad_request: {m}"),
            Refusal::InvalidPlate { index, error } => {
                format!("invalid_plate {index} at {}", error.position())
            }
            Refusal::NotAllowed {
                index,
                serial,
                reason,
            } => format!("not_allowed {index} {serial}: {reason}"),
            Refusal::TooManyNumbers { max } => format!("too_many_numbers {max}"),
            Refusal::InvalidConfig { field, message } => {
                format!("invalid_config {field}: {message}")
            }
            Refusal::InvalidRelease(m) => format!("invalid_release: {m}"),
            Refusal::UnknownClass(c) => format!("unknown_class {c}"),
            Refusal::SelectionClosed { reopens_at_ms } => match reopens_at_ms {
                Some(at) => format!("selection_closed until {}", local_text(*at)),
                None => "selection_closed".into(),
            },
            Refusal::WrongState { state } => format!("wrong_state {state}"),
            Refusal::NumberBusy { status } => format!("number_busy {status}"),
            Refusal::Conflict(m) => format!("conflict: {m}"),
            Refusal::VehicleNotEligible(m) => format!("vehicle_not_eligible: {m}"),
            Refusal::NoticeNotAccepted { expected } => format!("notice_not_accepted {expected}"),
            Refusal::TooSoon { retry_after_ms } => format!("too_soon {retry_after_ms}"),
            Refusal::UnknownApplication => "unknown_application".into(),
            Refusal::UnknownRelease => "unknown_release".into(),
            Refusal::UnknownNumber => "unknown_number".into(),
            Refusal::AlreadyPicked => "already_picked".into(),
            other => other.code().to_string(),
        }
    }
}

fn find_release(stats: &[ClassStats], id: &str) -> Option<Counts> {
    let id: u32 = id.parse().ok()?;
    stats
        .iter()
        .flat_map(|c| &c.releases)
        .find(|r| r.id == id)
        .map(|r| r.counts)
}

fn variant(r: &Refusal) -> &'static str {
    match r {
        Refusal::BadRequest(_) => "BadRequest",
        Refusal::InvalidPlate { .. } => "InvalidPlate",
        Refusal::NotAllowed { .. } => "NotAllowed",
        Refusal::TooManyNumbers { .. } => "TooManyNumbers",
        Refusal::InvalidVin(_) => "InvalidVin",
        Refusal::InvalidConfig { .. } => "InvalidConfig",
        Refusal::InvalidRelease(_) => "InvalidRelease",
        Refusal::UnknownOffice => "UnknownOffice",
        Refusal::UnknownApplication => "UnknownApplication",
        Refusal::UnknownRelease => "UnknownRelease",
        Refusal::UnknownNumber => "UnknownNumber",
        Refusal::UnknownClass(_) => "UnknownClass",
        Refusal::QuotaSpent => "QuotaSpent",
        Refusal::Exhausted => "Exhausted",
        Refusal::NotAvailable => "NotAvailable",
        Refusal::HoldExpired => "HoldExpired",
        Refusal::NotHeld => "NotHeld",
        Refusal::AlreadyPicked => "AlreadyPicked",
        Refusal::IdentityNotVerified => "IdentityNotVerified",
        Refusal::SelectionClosed { .. } => "SelectionClosed",
        Refusal::WrongState { .. } => "WrongState",
        Refusal::NumberBusy { .. } => "NumberBusy",
        Refusal::ApplicationExists { .. } => "ApplicationExists",
        Refusal::VinAlreadyUsed => "VinAlreadyUsed",
        Refusal::Conflict(_) => "Conflict",
        Refusal::Blacklisted { .. } => "Blacklisted",
        Refusal::VoucherMismatch => "VoucherMismatch",
        Refusal::VehicleNotEligible(_) => "VehicleNotEligible",
        Refusal::NoticeNotAccepted { .. } => "NoticeNotAccepted",
        Refusal::TooSoon { .. } => "TooSoon",
        Refusal::Unavailable(_) => "Unavailable",
    }
}

/// `8s`, `90s`, `30m`, `1h`, `7d`, `1500` (ms), and sums and differences of them: `10s+30m-1`.
fn duration(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut sign = 1i64;
    let mut term = String::new();
    let unit = |t: &str| -> Option<i64> {
        let (num, mult) = match t.chars().last()? {
            's' => (&t[..t.len() - 1], 1_000),
            'm' => (&t[..t.len() - 1], 60_000),
            'h' => (&t[..t.len() - 1], 3_600_000),
            'd' => (&t[..t.len() - 1], 86_400_000),
            _ => (t, 1),
        };
        Some(num.parse::<i64>().ok()? * mult)
    };
    for c in text.chars().chain(std::iter::once('+')) {
        if c == '+' || c == '-' {
            total += sign * unit(&term)?;
            term.clear();
            sign = if c == '+' { 1 } else { -1 };
        } else {
            term.push(c);
        }
    }
    Some(total)
}

fn apply_setting(config: &mut OfficeConfig, setting: &str, whence: &str) {
    let fail = |m: String| -> ! { panic!("{whence}: setting {setting}: {m}") };
    let (key, value) = setting
        .split_once('=')
        .unwrap_or_else(|| fail("key=value expected".into()));
    let r = &mut config.rules;
    let number = || -> u32 {
        value
            .parse()
            .unwrap_or_else(|_| fail("not a number".into()))
    };
    let ms = || -> u64 { duration(value).unwrap_or_else(|| fail("not a duration".into())) as u64 };
    let list = || -> Vec<&str> {
        value
            .split(',')
            .filter(|s| !s.is_empty() && *s != "none")
            .collect()
    };
    match key {
        "custom_quota" => r.custom_quota = number(),
        "custom_per_check" => r.custom_per_check = number(),
        "custom_min_interval" => r.custom_min_interval_ms = ms(),
        "random_quota" => r.random_quota = number(),
        "random_batch" => r.random_batch = number(),
        "random_min_interval" => r.random_min_interval_ms = ms(),
        "random_ttl" => r.random_ttl_ms = ms(),
        "candidate_ttl" => r.candidate_ttl_ms = ms(),
        "validity_working_days" => r.validity_working_days = number(),
        "blacklist_days" => r.blacklist_days = number(),
        "maintenance" => r.maintenance = value == "true",
        "service_hours" => {
            r.service_hours = value.split_once('-').map(|(open, close)| {
                ServiceHours::parse(open, close).unwrap_or_else(|e| fail(e.to_string()))
            })
        }
        "deny" => {
            r.deny = list()
                .into_iter()
                .map(|d| DenyRule::parse(d).unwrap_or_else(|e| fail(e.to_string())))
                .collect()
        }
        "holidays" => {
            r.holidays = list()
                .into_iter()
                .map(|d| {
                    NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap_or_else(|e| fail(e.to_string()))
                })
                .collect()
        }
        "notice" => config.notice.version = value.to_string(),
        "classes" => config.classes = list().into_iter().map(String::from).collect(),
        _ => match key.strip_prefix("custom_patterns.") {
            Some(class) => {
                let patterns = list().into_iter().map(common::pattern).collect();
                r.custom_patterns.insert(class.to_string(), patterns);
            }
            None => fail("unknown setting".into()),
        },
    }
}

/// Does `actual` start with `expected`, ending at a word boundary? `...` in `expected` stands
/// for any text.
fn glob_match(actual: &str, expected: &str) -> bool {
    fn boundary(rest: &str) -> bool {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }
    fn from(actual: &str, parts: &[&str]) -> bool {
        match parts {
            [] => true,
            [last] => actual
                .match_indices(last)
                .any(|(i, _)| boundary(&actual[i + last.len()..])),
            [first, rest @ ..] => actual
                .match_indices(first)
                .any(|(i, _)| from(&actual[i + first.len()..], rest)),
        }
    }
    let parts: Vec<&str> = expected.split("...").map(str::trim).collect();
    let first = parts[0];
    if !actual.starts_with(first) {
        return false;
    }
    if parts.len() == 1 {
        return boundary(&actual[first.len()..]);
    }
    from(&actual[first.len()..], &parts[1..])
}
