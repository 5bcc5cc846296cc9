//! Typed indexes into the model: a hub's index ([`HubId`]), a link's ([`LinkId`]) and
//! a satellite's ([`SatId`]) are different types, so one cannot be passed where
//! another is meant. [`IdVec`] is a vector indexed by one of them: the model's own
//! hubs, links and satellites, and every vector kept in parallel with them (rows
//! staged per target, the loader's key memory). An id is only made by an [`IdVec`]
//! (its `push`, `ids`, `position`), so it is always a position in the model it came
//! from, and a lookup is still an array access.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

mod sealed {
    /// An id's position; private to this module so only [`super::IdVec`] converts.
    pub trait Position: Copy {
        fn at(position: usize) -> Self;
        fn position(self) -> usize;
    }
}

/// An index of one kind of target: [`HubId`], [`LinkId`] or [`SatId`].
pub trait Id: sealed::Position {}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(usize);

        impl sealed::Position for $name {
            fn at(position: usize) -> Self {
                $name(position)
            }
            fn position(self) -> usize {
                self.0
            }
        }

        impl Id for $name {}
    };
}

id!(
    /// A hub of [`super::Mappings`].
    HubId
);
id!(
    /// A link of [`super::Mappings`].
    LinkId
);
id!(
    /// A satellite of [`super::Mappings`].
    SatId
);

/// A vector indexed by the id `I`.
pub struct IdVec<I, T> {
    items: Vec<T>,
    id: PhantomData<fn(I) -> I>,
}

/// Something per hub of the model.
pub type PerHub<T> = IdVec<HubId, T>;
/// Something per link of the model.
pub type PerLink<T> = IdVec<LinkId, T>;
/// Something per satellite of the model.
pub type PerSat<T> = IdVec<SatId, T>;

impl<I: Id, T> IdVec<I, T> {
    pub fn new() -> Self {
        IdVec {
            items: Vec::new(),
            id: PhantomData,
        }
    }

    /// Add `item` at the end; its id.
    pub fn push(&mut self, item: T) -> I {
        self.items.push(item);
        I::at(self.items.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.items.iter_mut()
    }

    /// The ids, in order. Borrows nothing, so the vector may change meanwhile.
    pub fn ids(&self) -> impl Iterator<Item = I> + use<I, T> {
        (0..self.items.len()).map(I::at)
    }

    /// Each item with its id.
    pub fn with_ids(&self) -> impl Iterator<Item = (I, &T)> {
        self.items.iter().enumerate().map(|(i, t)| (I::at(i), t))
    }

    /// Each item with its id, by value.
    pub fn into_with_ids(self) -> impl Iterator<Item = (I, T)> {
        self.items
            .into_iter()
            .enumerate()
            .map(|(i, t)| (I::at(i), t))
    }

    /// The id of the first item `pred` holds for.
    pub fn position(&self, pred: impl FnMut(&T) -> bool) -> Option<I> {
        self.items.iter().position(pred).map(I::at)
    }

    /// A vector of the same ids: `f` of each item.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> IdVec<I, U> {
        IdVec {
            items: self.items.iter().map(f).collect(),
            id: PhantomData,
        }
    }
}

impl<I: Id, T> Default for IdVec<I, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, T: Clone> Clone for IdVec<I, T> {
    fn clone(&self) -> Self {
        IdVec {
            items: self.items.clone(),
            id: PhantomData,
        }
    }
}

impl<I, T: fmt::Debug> fmt::Debug for IdVec<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

impl<I: Id, T> Index<I> for IdVec<I, T> {
    type Output = T;
    fn index(&self, id: I) -> &T {
        &self.items[id.position()]
    }
}

impl<I: Id, T> IndexMut<I> for IdVec<I, T> {
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.position()]
    }
}

impl<I, T> IntoIterator for IdVec<I, T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, I, T> IntoIterator for &'a IdVec<I, T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<'a, I, T> IntoIterator for &'a mut IdVec<I, T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_index_the_items_they_were_given_for() {
        let mut hubs: PerHub<&str> = IdVec::new();
        let a = hubs.push("a");
        let b = hubs.push("b");
        assert_eq!((hubs[a], hubs[b]), ("a", "b"));
        assert_eq!(hubs.position(|h| *h == "b"), Some(b));
        assert_eq!(hubs.ids().collect::<Vec<_>>(), [a, b]);
        let mut lens = hubs.map(|h| h.len());
        lens[b] += 1;
        assert_eq!(lens.with_ids().collect::<Vec<_>>(), [(a, &1), (b, &2)]);
    }
}
