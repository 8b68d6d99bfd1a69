//! `cap_isa` lowers the kernels' level for the rest of the process, once: its own test binary,
//! since the level is process-wide.

use kernels::{cap_isa, detected, isa, Isa};

#[test]
fn the_level_is_capped_once_and_then_fixed() {
    let capped = cap_isa(Isa::Avx2);
    assert!(capped <= Isa::Avx2 && capped <= detected());
    if std::env::var("HERD_ISA").is_err() {
        assert_eq!(capped, Isa::Avx2.min(detected()));
    }
    assert_eq!(isa(), capped);
    // Fixed now: a later cap changes nothing.
    assert_eq!(cap_isa(Isa::Scalar), capped);
    assert_eq!(isa(), capped);
}
