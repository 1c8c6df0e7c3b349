//! Method names for the histograms' `method` label, one table per process.
//!
//! On the wire a method is a `u32`. The typed layer's ids are hashes of `"module.method"`
//! ([`method_id`](crate::method_id)), so an id means one method in the whole process, and
//! every `service!` client and server names its methods here when it is made. Raw ids are
//! the program's own: name them with [`name_method`] (when an id means one thing in the
//! process). An id without a name is shown as its number.
//!
//! The table is read when stats are taken, never on a call's path.

use std::collections::BTreeMap;
use std::sync::RwLock;

static NAMES: RwLock<BTreeMap<u32, &'static str>> = RwLock::new(BTreeMap::new());

/// Names `id` in every histogram of the process (replacing a name it had).
///
/// ```
/// use longlink_rpc::metrics::{method_name, name_method};
/// name_method(17, "kv.get");
/// assert_eq!(method_name(17), Some("kv.get"));
/// ```
pub fn name_method(id: u32, name: &'static str) {
    NAMES
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, name);
}

/// The name of `id`, if one was given.
///
/// ```
/// longlink_rpc::service! {
///     pub mod accounts {
///         fn transfer(from: u64, to: u64, cents: i64);
///     }
/// }
/// # fn main() {
/// use longlink_rpc::metrics::method_name;
/// // A typed client (or server) names its service's methods when it is made.
/// let _client = accounts::Client::new(longlink_rpc::Client::new("127.0.0.1:7000"));
/// assert_eq!(method_name(accounts::methods::transfer), Some("accounts.transfer"));
/// # }
/// ```
pub fn method_name(id: u32) -> Option<&'static str> {
    NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .copied()
}

/// Names the ids of `names` that have no name yet (what `service!` calls: a name the
/// program gave stays).
pub(crate) fn name_methods_if_unnamed(names: &[(u32, &'static str)]) {
    let known = {
        let table = NAMES.read().unwrap_or_else(|e| e.into_inner());
        names.iter().all(|(id, _)| table.contains_key(id))
    };
    if known {
        return;
    }
    let mut table = NAMES.write().unwrap_or_else(|e| e.into_inner());
    for (id, name) in names {
        table.entry(*id).or_insert(name);
    }
}
