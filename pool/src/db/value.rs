//! Values, statement parameters, and the conversions between values and Rust types.

use std::fmt;

/// A value going into or coming out of the database, the same for every driver.
///
/// Column types a driver cannot map (dates, decimals, JSON, UUIDs…) are read as
/// [`Value::Text`] where the driver offers a text form (MySQL), or must be cast in SQL
/// (`::text` on PostgreSQL) — the error says so.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean (MySQL stores it as a tiny integer).
    Bool(bool),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer (MySQL `UNSIGNED` columns).
    U64(u64),
    /// A floating-point number.
    F64(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "bool",
            Value::I64(_) => "i64",
            Value::U64(_) => "u64",
            Value::F64(_) => "f64",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// Turns a Rust value into a statement parameter.
///
/// ```
/// use longlink_pool::db::{ToValue, Value};
/// assert_eq!(42i32.to_value(), Value::I64(42));
/// assert_eq!("hi".to_value(), Value::Text("hi".into()));
/// assert_eq!(None::<i64>.to_value(), Value::Null);
/// ```
pub trait ToValue {
    /// The value.
    fn to_value(&self) -> Value;
}

/// Reads a Rust value out of a column value.
///
/// ```
/// use longlink_pool::db::{FromValue, Value};
/// assert_eq!(i32::from_value(&Value::I64(7)).unwrap(), 7);
/// assert_eq!(Option::<String>::from_value(&Value::Null).unwrap(), None);
/// assert!(i8::from_value(&Value::I64(300)).is_err());
/// ```
pub trait FromValue: Sized {
    /// The Rust value, or why it cannot be one.
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bool(b) => Ok(*b),
            Value::I64(i) => Ok(*i != 0),
            Value::U64(u) => Ok(*u != 0),
            Value::Text(t) if t == "0" || t == "1" => Ok(t == "1"),
            v => Err(format!("cannot read {} as bool", v.kind())),
        }
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                #[allow(irrefutable_let_patterns, clippy::unnecessary_fallible_conversions)]
                if let Ok(i) = i64::try_from(*self) { Value::I64(i) } else { Value::U64(*self as u64) }
            }
        }

        impl FromValue for $t {
            fn from_value(value: &Value) -> Result<Self, String> {
                let out_of_range = |v: &dyn fmt::Display| format!("{v} is out of range for {}", stringify!($t));
                match value {
                    Value::I64(i) => <$t>::try_from(*i).map_err(|_| out_of_range(i)),
                    Value::U64(u) => <$t>::try_from(*u).map_err(|_| out_of_range(u)),
                    Value::Bool(b) => Ok(<$t>::from(*b)),
                    Value::Text(t) => t.trim().parse().map_err(|_| format!("cannot read text {t:?} as {}", stringify!($t))),
                    v => Err(format!("cannot read {} as {}", v.kind(), stringify!($t))),
                }
            }
        }
    )*};
}

integers!(i8, i16, i32, i64, u8, u16, u32, u64);

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::F64(*self)
    }
}

impl ToValue for f32 {
    fn to_value(&self) -> Value {
        Value::F64(f64::from(*self))
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::F64(f) => Ok(*f),
            Value::I64(i) => Ok(*i as f64),
            Value::U64(u) => Ok(*u as f64),
            Value::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| format!("cannot read text {t:?} as f64")),
            v => Err(format!("cannot read {} as f64", v.kind())),
        }
    }
}

impl FromValue for f32 {
    fn from_value(value: &Value) -> Result<Self, String> {
        f64::from_value(value).map(|f| f as f32)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(t) => Ok(t.clone()),
            Value::Bytes(b) => {
                String::from_utf8(b.clone()).map_err(|_| "bytes are not utf-8 text".to_owned())
            }
            Value::I64(i) => Ok(i.to_string()),
            Value::U64(u) => Ok(u.to_string()),
            Value::F64(f) => Ok(f.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Err("cannot read NULL as String (use Option<String>)".to_owned()),
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Bytes(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Text(t) => Ok(t.clone().into_bytes()),
            v => Err(format!("cannot read {} as bytes", v.kind())),
        }
    }
}

/// Statement parameters: `()`, a tuple of up to eight [`ToValue`]s, or a `Vec<Value>` /
/// `&[Value]`. Placeholders are the driver's own: `?` for MySQL and SQLite (which also
/// takes `?NNN`, `:name`, `@name`, `$name`), `$1` for PostgreSQL. Their number is checked
/// against the parameters before anything is sent ([`DbError::ParamCount`](super::DbError::ParamCount)).
///
/// ```
/// use longlink_pool::db::{Params, Value};
/// assert_eq!((1, "a").into_values(), vec![Value::I64(1), Value::Text("a".into())]);
/// assert!(().into_values().is_empty());
/// ```
pub trait Params {
    /// The parameter values in order.
    fn into_values(self) -> Vec<Value>;
}

impl Params for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}

impl Params for &[Value] {
    fn into_values(self) -> Vec<Value> {
        self.to_vec()
    }
}

macro_rules! tuple_params {
    ($($name:ident),*) => {
        impl<$($name: ToValue),*> Params for ($($name,)*) {
            #[allow(non_snake_case)]
            fn into_values(self) -> Vec<Value> {
                let ($($name,)*) = self;
                vec![$($name.to_value()),*]
            }
        }
    };
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}
tuple_params!(A);
tuple_params!(A, B);
tuple_params!(A, B, C);
tuple_params!(A, B, C, D);
tuple_params!(A, B, C, D, E);
tuple_params!(A, B, C, D, E, F);
tuple_params!(A, B, C, D, E, F, G);
tuple_params!(A, B, C, D, E, F, G, H);
