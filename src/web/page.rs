//! What the managers of one page share on a key of private storage (a host
//! adapter, or Web Storage with `syncTabs: false`): no other tab writes
//! it, but managers made one after another in this page do (React Strict
//! Mode's remount, hot reload, a route that re-creates its manager), and a
//! disposed one still finishes the refresh it has on the wire. They take
//! turns through one lock, see each other's writes through one record, and
//! queue their adapter writes in one line, so the session can treat the key
//! as coordinated storage (`Store::Private`).
//!
//! One table per wasm instance (`thread_local`), touched with take and set:
//! no borrow can fail, and nothing here calls JS but `js::later`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use super::driver::{self, Driver};
use super::js;
use super::storage::Line;

/// A manager on the key: its id, its driver, whether it hears notices
/// (not after `dispose()`).
type Member = (u32, Weak<RefCell<Driver>>, bool);

#[derive(Default)]
struct Entry {
    key: String,
    /// The record as the page last wrote or read it; `None`: not read yet.
    record: Option<Option<String>>,
    /// Who holds the page lock, and who waits for it (with the wait's
    /// generation, so a grant for a wait given up is passed on).
    holder: Option<u32>,
    waiting: Vec<(u32, u32)>,
    /// A manager of the page has its refresh request on the wire.
    marked: Option<u32>,
    members: Vec<Member>,
    /// The key's adapter writes, one at a time and in order.
    line: Line,
}

thread_local! {
    static PAGE: Cell<Vec<Entry>> = const { Cell::new(Vec::new()) };
}

fn entry<R>(key: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
    let mut list = PAGE.take();
    if !list.iter().any(|e| e.key == key) {
        list.push(Entry { key: key.into(), ..Entry::default() });
    }
    let r = match list.iter_mut().find(|e| e.key == key) {
        Some(e) => f(e),
        None => f(&mut Entry::default()),
    };
    // An entry nobody is on any more goes (with the record it knew).
    list.retain(|e| !e.members.is_empty());
    PAGE.set(list);
    r
}

/// Hands the lock `id` gave up (or held when it went) to the next in line.
fn release(key: &str, id: u32) {
    let next = entry(key, |e| {
        e.waiting.retain(|(m, _)| *m != id);
        if e.marked == Some(id) {
            e.marked = None;
        }
        if e.holder != Some(id) {
            return None;
        }
        e.holder = None;
        let (m, gen) = *e.waiting.first()?;
        e.waiting.remove(0);
        e.holder = Some(m);
        let d = e.members.iter().find(|(i, _, _)| *i == m).map(|(_, d, _)| d.clone());
        Some((m, gen, d))
    });
    if let Some((m, gen, d)) = next {
        let key = key.to_string();
        js::later(move || match d.and_then(|d| d.upgrade()) {
            Some(s) => driver::page_granted(&s, gen),
            // Gone meanwhile: the next one gets it.
            None => release(&key, m),
        });
    }
}

/// A manager's place on a key of the page; dropping it gives up its waits
/// and, if it still holds the lock, the lock.
pub struct Membership {
    key: String,
    id: u32,
}

impl Membership {
    /// Joins the managers of the page on `key`.
    pub fn join(key: &str, id: u32, driver: Weak<RefCell<Driver>>) -> Membership {
        entry(key, |e| e.members.push((id, driver, true)));
        Membership { key: key.into(), id }
    }

    /// Stops hearing of changes (dispose): a refresh on the wire still
    /// finishes under the lock.
    pub fn mute(&self) {
        entry(&self.key, |e| e.members.iter_mut().filter(|m| m.0 == self.id).for_each(|m| m.2 = false));
    }

    /// The record as the page knows it, if it read or wrote it already.
    pub fn record(&self) -> Option<Option<String>> {
        entry(&self.key, |e| e.record.clone())
    }

    /// What this manager wrote (`read`: what storage gave at start, which
    /// a write made meanwhile by another manager of the page overrides).
    pub fn set(&self, text: Option<String>, read: bool) {
        entry(&self.key, |e| {
            if !read || e.record.is_none() {
                e.record = Some(text);
            }
        });
    }

    /// The key's write line.
    pub fn line(&self) -> Line {
        entry(&self.key, |e| e.line.clone())
    }

    /// Whether no other manager of the page is on the key (a write of
    /// tokens made here then held their only copy).
    pub fn alone(&self) -> bool {
        entry(&self.key, |e| e.members.iter().all(|(m, _, _)| *m == self.id))
    }

    /// Whether another manager of the page has its refresh on the wire.
    pub fn marked(&self) -> bool {
        entry(&self.key, |e| e.marked.is_some_and(|m| m != self.id))
    }

    /// Says this manager's refresh is on the wire (or no longer).
    pub fn mark(&self, on: bool) {
        entry(&self.key, |e| {
            if on {
                e.marked = Some(self.id);
            } else if e.marked == Some(self.id) {
                e.marked = None;
            }
        });
    }

    /// Asks for the page lock for the wait `gen`; the driver hears of the
    /// grant (`driver::page_granted`) in a later task.
    pub fn lock(&self, gen: u32, driver: &Rc<RefCell<Driver>>) {
        let now = entry(&self.key, |e| match e.holder {
            None => {
                e.holder = Some(self.id);
                true
            }
            Some(_) => {
                e.waiting.push((self.id, gen));
                false
            }
        });
        if now {
            let weak = Rc::downgrade(driver);
            js::later(move || {
                if let Some(s) = weak.upgrade() {
                    driver::page_granted(&s, gen);
                }
            });
        }
    }

    /// Gives the lock back (or the wait up); the next in line gets it.
    pub fn unlock(&self) {
        release(&self.key, self.id);
    }

    /// Tells every other manager of the page to look again (`said`: the
    /// record the notice names, as the channel carries it).
    pub fn notify(&self, said: &str) {
        let others: Vec<Weak<RefCell<Driver>>> =
            entry(&self.key, |e| e.members.iter().filter(|(m, _, on)| *m != self.id && *on).map(|(_, d, _)| d.clone()).collect());
        for d in others {
            let said = said.to_string();
            js::later(move || {
                if let Some(s) = d.upgrade() {
                    driver::heard(&s, &said);
                }
            });
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let key = std::mem::take(&mut self.key);
        release(&key, self.id);
        entry(&key, |e| e.members.retain(|(m, _, _)| *m != self.id));
    }
}
