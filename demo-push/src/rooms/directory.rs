//! Where the rooms are: what the fan-out and the dispatcher read.

use std::sync::Arc;

use super::{Gateway, RoomInfo};

/// A room: what it announces and how to reach it.
#[derive(Clone)]
pub struct RoomEntry {
    /// Its name, addresses and load.
    pub info: RoomInfo,
    /// Deliveries, kicks and drains go through it.
    pub gateway: Arc<dyn Gateway>,
}

impl std::fmt::Debug for RoomEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomEntry")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The rooms known now.
pub trait Directory: Send + Sync + std::fmt::Debug + 'static {
    /// The rooms, by name (a shared snapshot: a push reads it without copying).
    fn rooms(&self) -> Arc<Vec<RoomEntry>>;
}

/// A fixed set of rooms: the one room of a single process.
///
/// ```
/// # use std::sync::Arc;
/// use longlink_push::rooms::{Directory, Local, RoomInfo};
/// # fn gateway() -> Arc<dyn longlink_push::rooms::Gateway> { unimplemented!() }
/// # fn _doc() {
/// let rooms = Local::new(RoomInfo::local("room-1", "ws://127.0.0.1:7801/", "127.0.0.1:7802"), gateway());
/// assert_eq!(rooms.rooms().len(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Local {
    rooms: Arc<Vec<RoomEntry>>,
}

impl Local {
    /// The one room `info`, reached through `gateway`.
    pub fn new(info: RoomInfo, gateway: Arc<dyn Gateway>) -> Local {
        Local {
            rooms: Arc::new(vec![RoomEntry { info, gateway }]),
        }
    }
}

impl Directory for Local {
    fn rooms(&self) -> Arc<Vec<RoomEntry>> {
        Arc::clone(&self.rooms)
    }
}
