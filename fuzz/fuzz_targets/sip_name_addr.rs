//! Fuzz target: the one-walk name-addr (`NameAddr::parse_list_head`, From, To and the first
//! Contact) against the two-step parse it stands in for (the list split, then
//! `NameAddr::parse` / `Contact::parse` of the first element). Where the walk decides it must
//! give the same address and leave the same list after it; where it does not, the two-step
//! parse answers (so every `400` reason is the two-step parser's). Never panics.
#![no_main]

use akagate_slowpath::sip::lex::ListIter;
use akagate_slowpath::sip::{Contact, NameAddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = std::str::from_utf8(data) else {
        return;
    };
    let Some((addr, rest)) = NameAddr::parse_list_head(v) else {
        return;
    };
    let mut it = ListIter::new(v);
    let first = it.next().expect("a list has a first element");
    let first = first.expect("the walk decided, so the split finds the element");
    assert_eq!(NameAddr::parse(first), Ok(addr), "{v:?}");
    assert_eq!(Contact::parse(first), Ok(Contact::Addr(addr)), "{v:?}");
    let after: Vec<_> = rest.into_iter().flat_map(ListIter::new).collect();
    assert_eq!(after, it.collect::<Vec<_>>(), "{v:?}");
});
