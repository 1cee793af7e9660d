//! Shared state: [`State<T>`] handler arguments, the [`AppState`] type map they come from, and
//! the [`StateType`] each function records for the start-up check. Below every module that
//! uses them (the handler, the registry, the config); `app` fills it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A shared value a handler takes as an argument after its event (or batch, or request):
/// `state: State<T>`. It derefs to `T` and is cheap to clone (the value is shared, not
/// copied). The value comes from [`App::state`](crate::App::state) or from an
/// [`on_startup`](crate::App::on_startup) hook that returns a `T`.
///
/// ```
/// # use jetfn::State;
/// struct Settings { greeting: String }
/// fn greet(settings: State<Settings>) -> String {
///     format!("{}!", settings.greeting)        // `State<Settings>` derefs to `Settings`
/// }
/// ```
pub struct State<T: ?Sized + Send + Sync + 'static>(Arc<T>);

impl<T: Send + Sync + 'static> State<T> {
    /// A state value (what [`App::state`](crate::App::state) provides; also for calling a
    /// handler directly in a unit test).
    pub fn new(value: T) -> Self {
        Self(Arc::new(value))
    }
}

impl<T: ?Sized + Send + Sync + 'static> State<T> {
    /// The shared value (another handle to the same `Arc`).
    pub fn arc(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T: ?Sized + Send + Sync + 'static> Clone for State<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized + Send + Sync + 'static> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized + Send + Sync + 'static + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

/// A state type a function takes, as its registration records it: for the start-up check
/// ("function `f` at src/main.rs:12 takes `State<Db>`, which nobody provides") and `list`.
#[derive(Clone, Copy)]
pub struct StateType {
    name: fn() -> &'static str,
    id: fn() -> TypeId,
}

impl StateType {
    /// The state type `T` (written by the macro for each `State<T>` argument).
    pub const fn of<T: ?Sized + 'static>() -> Self {
        Self {
            name: std::any::type_name::<T>,
            id: TypeId::of::<T>,
        }
    }

    /// The type's name (`std::any::type_name`).
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    pub(crate) fn id(&self) -> TypeId {
        (self.id)()
    }
}

impl fmt::Debug for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq for StateType {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

/// Every state value of a running application, by type: what [`App::state`](crate::App::state)
/// and the startup hooks provided. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct AppState {
    values: Arc<HashMap<TypeId, Provided>>,
}

/// One provided value: the `Arc<T>` behind a `State<T>`, and the type's name.
#[derive(Clone)]
pub(crate) struct Provided {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    pub(crate) name: &'static str,
}

impl fmt::Debug for Provided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Provided {
    pub(crate) fn new<T: Send + Sync + 'static>(value: T) -> Self {
        Self {
            value: Arc::new(value),
            name: std::any::type_name::<T>(),
        }
    }
}

impl AppState {
    pub(crate) fn from_map(values: HashMap<TypeId, Provided>) -> Self {
        Self {
            values: Arc::new(values),
        }
    }

    /// The value provided for `T`, if any.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<State<T>> {
        let provided = self.values.get(&TypeId::of::<T>())?;
        provided.value.clone().downcast::<T>().ok().map(State)
    }

    /// Whether a value of this type was provided.
    pub(crate) fn has(&self, ty: &StateType) -> bool {
        self.values.contains_key(&ty.id())
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.values.values().map(|p| p.name).collect();
        names.sort_unstable();
        f.debug_struct("AppState").field("types", &names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Db(u32);

    #[test]
    fn values_are_found_by_type_and_shared() {
        let mut map = HashMap::new();
        map.insert(TypeId::of::<Db>(), Provided::new(Db(7)));
        let state = AppState::from_map(map);
        let first = state.get::<Db>().expect("provided");
        let second = state.get::<Db>().expect("provided");
        assert_eq!(*first, Db(7));
        assert!(Arc::ptr_eq(first.arc(), second.arc()), "shared, not copied");
        assert!(state.get::<String>().is_none());
        assert!(state.has(&StateType::of::<Db>()));
        assert!(!state.has(&StateType::of::<String>()));
        assert!(StateType::of::<Db>().name().ends_with("Db"));
    }
}
