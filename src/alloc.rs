//! Buffers whose size comes from the caller: the size product is checked and the allocation is
//! fallible, so an absurd shape is a typed [`Error`], never a panic or an abort.

use crate::error::{Error, Result};

/// The product of `dims` (elements of a buffer of that shape), or [`Error::Allocation`] naming
/// `what` when it overflows `usize`.
pub(crate) fn elements(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::Allocation(format!("{what}: shape {dims:?} overflows usize")))
}

/// A `Vec` of `len` copies of `value`, or [`Error::Allocation`] naming `what` when the memory
/// cannot be had (instead of the global allocator's abort).
pub(crate) fn filled<T: Clone>(what: &str, len: usize, value: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::Allocation(format!(
            "{what}: {len} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    v.resize(len, value);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_errors() {
        assert_eq!(elements("x", &[3, 4]).unwrap(), 12);
        assert!(matches!(
            elements("x", &[usize::MAX, 2]),
            Err(Error::Allocation(m)) if m.contains("x: shape")
        ));
        assert!(matches!(
            filled("w", usize::MAX / 8, 0.0f32),
            Err(Error::Allocation(_))
        ));
        assert!(matches!(
            filled("w", 1 << 44, 0u8),
            Err(Error::Allocation(_))
        ));
        assert_eq!(filled("w", 3, 1.5f32).unwrap(), vec![1.5; 3]);
    }
}
