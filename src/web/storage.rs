//! Storage backends: Web Storage, memory, and host adapters whose methods
//! may return Promises (mini-programs, Capacitor Preferences, native bridges).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use super::js;
use super::options::StorageChoice;

/// Where records live. Memory-only managers keep nothing here. Cloning
/// copies handles, so the driver can use it with no borrow held.
#[derive(Clone)]
pub enum Backend {
    /// localStorage or sessionStorage.
    Web(web_sys::Storage),
    /// No persistence.
    Memory,
    /// A host adapter, with its writes queued so they land in order.
    Adapter(Adapter),
}

/// A `{ getItem, setItem, removeItem }` object from the host.
#[derive(Clone)]
pub struct Adapter {
    obj: JsValue,
    get: Function,
    set: Function,
    remove: Function,
    queue: Line,
}

/// Pending adapter writes, each with whom to tell if it fails. A native
/// bridge may answer out of order if we fire writes concurrently, so each
/// waits for the one before it; every manager of the page on a key writes
/// through one line (`page`).
#[derive(Default)]
pub struct WriteQueue {
    pending: VecDeque<(String, Option<String>, OnError)>,
    running: bool,
}

/// A key's write line, shared by the managers of a page.
pub type Line = Rc<RefCell<WriteQueue>>;

/// A storage failure, reported once per manager through `storageError`.
pub type OnError = Rc<dyn Fn(JsValue)>;

/// Opens the chosen backend. Web Storage is probed with a real write: Safari
/// private mode and webviews with DOM storage disabled expose a Storage that
/// throws, or none at all. `Err` carries why we fell back to memory.
pub fn open(choice: &StorageChoice) -> (Backend, Option<JsValue>) {
    let name = match choice {
        StorageChoice::Memory => return (Backend::Memory, None),
        StorageChoice::Adapter(obj) => {
            // The options check already saw all three methods.
            let f = |n| js::method(obj, n);
            return match (f("getItem"), f("setItem"), f("removeItem")) {
                (Some(get), Some(set), Some(remove)) => {
                    (Backend::Adapter(Adapter { obj: obj.clone(), get, set, remove, queue: Line::default() }), None)
                }
                _ => (Backend::Memory, Some(js_sys::Error::new("the storage adapter lost its methods").into())),
            };
        }
        StorageChoice::Local => "localStorage",
        StorageChoice::Session => "sessionStorage",
    };
    // Reading the property itself can throw (a SecurityError in sandboxed frames).
    let store = js_sys::Reflect::get(&js::global(), &JsValue::from_str(name));
    let why = match store {
        Ok(s) if s.is_object() => {
            let s: web_sys::Storage = s.unchecked_into();
            let probe = "__tessera_probe__";
            match s.set_item(probe, "1").and_then(|_| s.remove_item(probe)) {
                Ok(()) => return (Backend::Web(s), None),
                Err(e) => e,
            }
        }
        Ok(_) => js_sys::Error::new(&[name, " is not available (DOM storage disabled?)"].concat()).into(),
        Err(e) => e,
    };
    (Backend::Memory, Some(why))
}

/// What a read produced: a value now, or a Promise for one.
pub enum Pending {
    /// Synchronous answer (`None`: nothing stored, or storage failed).
    Now(Option<String>),
    /// An adapter returned a Promise.
    Later(Promise),
}

impl Backend {
    /// Writes through `line` (the page's, for the key) from now on.
    pub fn share(&mut self, line: Line) {
        if let Backend::Adapter(a) = self {
            a.queue = line;
        }
    }

    /// The backend's name, as `tm.storage` reports it.
    pub fn name(&self, choice: &StorageChoice) -> &'static str {
        match (self, choice) {
            (Backend::Memory, _) => "memory",
            (Backend::Adapter(_), _) => "adapter",
            (Backend::Web(_), StorageChoice::Session) => "sessionStorage",
            (Backend::Web(_), _) => "localStorage",
        }
    }

    /// Reads `key`. Errors become "nothing stored" plus a report.
    pub fn read(&self, key: &str, on_error: &OnError) -> Pending {
        match self {
            Backend::Memory => Pending::Now(None),
            Backend::Web(s) => Pending::Now(s.get_item(key).unwrap_or_else(|e| {
                on_error(e);
                None
            })),
            Backend::Adapter(a) => match a.get.call1(&a.obj, &JsValue::from_str(key)) {
                Ok(v) if v.has_type::<Promise>() || js::method(&v, "then").is_some() => Pending::Later(Promise::resolve(&v)),
                Ok(v) => Pending::Now(v.as_string()),
                Err(e) => {
                    on_error(e);
                    Pending::Now(None)
                }
            },
        }
    }

    /// Writes (`Some`) or removes (`None`) `key`. Web Storage writes are
    /// synchronous and their error is returned; adapter writes are queued in
    /// order and report errors through `on_error`.
    pub fn write(&self, key: &str, value: Option<&str>, on_error: &OnError) -> Result<(), JsValue> {
        match self {
            Backend::Memory => Ok(()),
            Backend::Web(s) => match value {
                Some(v) => s.set_item(key, v),
                None => s.remove_item(key),
            },
            Backend::Adapter(a) => {
                let start = {
                    let mut q = a.queue.borrow_mut();
                    q.pending.push_back((key.into(), value.map(String::from), on_error.clone()));
                    !std::mem::replace(&mut q.running, true)
                };
                if start {
                    let (obj, set, remove, queue) = (a.obj.clone(), a.set.clone(), a.remove.clone(), a.queue.clone());
                    js::spawn(drain(obj, set, remove, queue));
                }
                Ok(())
            }
        }
    }
}

async fn drain(obj: JsValue, set: Function, remove: Function, queue: Line) {
    loop {
        let next = {
            let mut q = queue.borrow_mut();
            let n = q.pending.pop_front();
            if n.is_none() {
                q.running = false;
            }
            n
        };
        let Some((key, value, on_error)) = next else { return };
        let k = JsValue::from_str(&key);
        let r = match &value {
            Some(v) => set.call2(&obj, &k, &JsValue::from_str(v)),
            None => remove.call1(&obj, &k),
        };
        let r = match r {
            Ok(v) => JsFuture::from(Promise::resolve(&v)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            on_error(e);
        }
    }
}
