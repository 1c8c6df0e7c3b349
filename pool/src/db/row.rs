//! Result rows, and reading them as Rust values.

use std::fmt;
use std::sync::Arc;

use super::{DbError, FromValue, Value};

/// One result row: the column names (shared by all rows of a result) and the values.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

/// Picks a column: by position (`usize`) or by name (`&str`).
pub trait ColumnIndex: fmt::Display {
    /// The position in `columns`, if present.
    fn position(&self, columns: &[String]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl ColumnIndex for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

impl Row {
    /// A row (used by the drivers).
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> Row {
        debug_assert_eq!(columns.len(), values.len());
        Row { columns, values }
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// `true` for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A column's value as `T`, by position or name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use longlink_pool::db::{Row, Value};
    /// let row = Row::new(Arc::from(vec!["id".to_owned(), "name".to_owned()]), vec![Value::I64(1), Value::Text("ada".into())]);
    /// assert_eq!(row.get::<i64>(0).unwrap(), 1);
    /// assert_eq!(row.get::<String>("name").unwrap(), "ada");
    /// assert!(row.get::<i64>("missing").is_err());
    /// ```
    pub fn get<T: FromValue>(&self, index: impl ColumnIndex) -> Result<T, DbError> {
        let Some(i) = index.position(&self.columns) else {
            return Err(DbError::ColumnNotFound {
                column: index.to_string(),
            });
        };
        T::from_value(&self.values[i]).map_err(|reason| DbError::Decode {
            column: self.columns[i].clone(),
            reason,
        })
    }
}

/// Builds a Rust value from a whole row: a single [`FromValue`] (`i64`, `String`,
/// `Option<T>`…) reads a one-column row, tuples of up to eight read the columns in order;
/// implement it for your structs.
///
/// A single value refuses a row of more than one column (a `SELECT *` read as `i64` is a
/// mistake, not the first column); a tuple refuses a row with fewer columns than it has.
///
/// ```
/// use std::sync::Arc;
/// use longlink_pool::db::{DbError, FromRow, Row, Value};
///
/// struct User { id: i64, name: String }
///
/// impl FromRow for User {
///     fn from_row(row: &Row) -> Result<User, DbError> {
///         Ok(User { id: row.get("id")?, name: row.get("name")? })
///     }
/// }
///
/// let row = Row::new(Arc::from(vec!["id".to_owned(), "name".to_owned()]), vec![Value::I64(1), Value::Text("ada".into())]);
/// assert_eq!(User::from_row(&row)?.name, "ada");
/// assert_eq!(<(i64, String)>::from_row(&row)?, (1, "ada".to_owned()));
/// let err = i64::from_row(&row).unwrap_err();
/// assert_eq!(err.to_string(), "cannot read a row of 2 columns as i64 (1 wanted)");
/// let count = Row::new(Arc::from(vec!["COUNT(*)".to_owned()]), vec![Value::I64(3)]);
/// assert_eq!(i64::from_row(&count)?, 3);
/// # Ok::<(), DbError>(())
/// ```
pub trait FromRow: Sized {
    /// The value.
    fn from_row(row: &Row) -> Result<Self, DbError>;
}

impl FromRow for Row {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        Ok(row.clone())
    }
}

impl<T: FromValue> FromRow for T {
    fn from_row(row: &Row) -> Result<Self, DbError> {
        if row.len() != 1 {
            return Err(column_count::<T>(row, 1));
        }
        row.get(0)
    }
}

fn column_count<T>(row: &Row, wanted: usize) -> DbError {
    DbError::ColumnCount {
        found: row.len(),
        wanted,
        target: short_type_name::<T>(),
    }
}

/// `core::option::Option<alloc::string::String>` as `Option<String>`.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or_default());
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or_default());
    out
}

macro_rules! tuple_from_row {
    ($($name:ident : $i:tt),*) => {
        impl<$($name: FromValue),*> FromRow for ($($name,)*) {
            fn from_row(row: &Row) -> Result<Self, DbError> {
                let want = [$($i),*].len();
                if row.len() < want {
                    return Err(column_count::<Self>(row, want));
                }
                Ok(($(row.get::<$name>($i)?,)*))
            }
        }
    };
}

tuple_from_row!(A: 0);
tuple_from_row!(A: 0, B: 1);
tuple_from_row!(A: 0, B: 1, C: 2);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6);
tuple_from_row!(A: 0, B: 1, C: 2, D: 3, E: 4, F: 5, G: 6, H: 7);

/// What an `exec` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecResult {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The id generated by an insert, where the database reports one (MySQL, SQLite).
    pub last_insert_id: Option<u64>,
}
