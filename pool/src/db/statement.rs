//! A statement checked against its parameters before anything is sent.
//!
//! Drivers differ in what a mismatch does: SQLite binds NULL for a missing parameter and
//! takes `$1` (MySQL refuses both), and PostgreSQL's refusal comes as a protocol error
//! that looks like a broken connection. Counting the placeholders here makes every driver
//! refuse the same way, with [`DbError::ParamCount`] or [`DbError::Placeholder`].

use std::borrow::Cow;
use std::fmt::Write as _;

use super::placeholders::{self, Placeholder};
use super::{DbError, Driver, Value};

/// A statement whose placeholders match its values; the only thing
/// [`AnyConn`](super::any_conn::AnyConn) runs.
#[derive(Debug)]
pub(crate) struct Statement<'a> {
    driver: Driver,
    /// The text as written, or (SQLite, named or mixed placeholders) with each placeholder
    /// rewritten as `?NNN`: the driver binds `?NNN` by number, but `:name` not at all.
    sql: Cow<'a, str>,
    values: &'a [Value],
}

impl<'a> Statement<'a> {
    /// Checks `sql` against `values` for `driver`.
    pub(crate) fn new(
        driver: Driver,
        sql: &'a str,
        values: &'a [Value],
    ) -> Result<Statement<'a>, DbError> {
        let given = values.len();
        let mut wrong_style = None;
        let mut expected = 0;
        let mut numbering = SqliteNumbering::default();
        let (mut saw_question, mut needs_numbers) = (false, false);
        placeholders::scan(driver, sql, |_, p| match (driver, p) {
            (Driver::Mysql | Driver::Sqlite, Placeholder::Dollar(n)) => {
                wrong_style.get_or_insert_with(|| format!("`${n}`"));
            }
            (Driver::Mysql, _) => expected += 1,
            (Driver::Postgres, Placeholder::Dollar(n)) => expected = expected.max(n),
            (Driver::Postgres, _) => saw_question = true,
            (Driver::Sqlite, p) => {
                needs_numbers |= matches!(p, Placeholder::Named(_));
                numbering.number(p);
            }
        });
        if let Some(found) = wrong_style {
            return Err(DbError::Placeholder { found, driver });
        }
        let sql = if driver == Driver::Sqlite {
            expected = numbering.max;
            // `?` counts on from the highest number so far in SQLite, but the driver binds
            // the k-th `?` to the k-th value: mixed with `?NNN` they disagree.
            needs_numbers |= numbering.mixed();
            if needs_numbers {
                Cow::Owned(numbered(sql))
            } else {
                Cow::Borrowed(sql)
            }
        } else {
            Cow::Borrowed(sql)
        };
        if expected != given {
            if driver == Driver::Postgres && expected == 0 && saw_question {
                return Err(DbError::Placeholder {
                    found: "`?`".to_owned(),
                    driver,
                });
            }
            return Err(DbError::ParamCount { expected, given });
        }
        Ok(Statement {
            driver,
            sql,
            values,
        })
    }

    pub(crate) fn driver(&self) -> Driver {
        self.driver
    }

    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    pub(crate) fn values(&self) -> &'a [Value] {
        self.values
    }
}

/// SQLite's own numbering: `?NNN` is NNN, `?` and a new name take the highest number so
/// far plus one, and a name seen before keeps its number.
#[derive(Default)]
struct SqliteNumbering<'a> {
    max: usize,
    names: Vec<(&'a str, usize)>,
    next: bool,
    numbered: bool,
}

impl<'a> SqliteNumbering<'a> {
    fn number(&mut self, p: Placeholder<'a>) -> usize {
        let n = match p {
            Placeholder::Numbered(n) => {
                self.numbered = true;
                n
            }
            Placeholder::Named(name) => match self.names.iter().find(|(known, _)| *known == name) {
                Some(&(_, n)) => n,
                None => {
                    let n = self.max + 1;
                    self.names.push((name, n));
                    n
                }
            },
            Placeholder::Next | Placeholder::Dollar(_) => {
                self.next = true;
                self.max + 1
            }
        };
        self.max = self.max.max(n);
        n
    }

    fn mixed(&self) -> bool {
        self.next && self.numbered
    }
}

/// `sql` with every placeholder written `?NNN`, numbered as SQLite numbers them.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut numbering = SqliteNumbering::default();
    let mut copied = 0;
    placeholders::scan(Driver::Sqlite, sql, |at, p| {
        out.push_str(&sql[copied..at.start]);
        let _ = write!(out, "?{}", numbering.number(p));
        copied = at.end;
    });
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(driver: Driver, sql: &str, given: usize) -> Result<String, DbError> {
        let values = vec![Value::Null; given];
        Statement::new(driver, sql, &values).map(|s| s.sql().to_owned())
    }

    #[test]
    fn missing_or_extra_parameters_are_refused_on_every_driver() {
        for (driver, sql) in [
            (Driver::Mysql, "SELECT ?, ?"),
            (Driver::Postgres, "SELECT $1, $2"),
            (Driver::Sqlite, "SELECT ?, ?"),
        ] {
            assert!(check(driver, sql, 2).is_ok(), "{driver}");
            for given in [1, 3] {
                match check(driver, sql, given) {
                    Err(DbError::ParamCount {
                        expected: 2,
                        given: g,
                    }) => assert_eq!(g, given),
                    other => panic!("{driver} {given}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn dollar_placeholders_on_mysql_and_sqlite_say_to_use_question_marks() {
        for driver in [Driver::Mysql, Driver::Sqlite] {
            let err = check(driver, "SELECT $1", 1).unwrap_err();
            assert!(matches!(err, DbError::Placeholder { .. }), "{err:?}");
            assert!(err.to_string().contains("use `?`"), "{err}");
        }
        let err = check(Driver::Postgres, "SELECT ?", 1).unwrap_err();
        assert!(err.to_string().contains("`$1`"), "{err}");
        // A JSON operator with its parameters is fine.
        assert!(check(Driver::Postgres, "SELECT $1::jsonb ? 'a'", 1).is_ok());
    }

    #[test]
    fn sqlite_numbers_named_and_mixed_placeholders_as_sqlite_does() {
        assert_eq!(
            check(Driver::Sqlite, "SELECT ?, ?", 2).unwrap(),
            "SELECT ?, ?"
        );
        assert_eq!(
            check(Driver::Sqlite, "SELECT ?2, ?1", 2).unwrap(),
            "SELECT ?2, ?1"
        );
        assert_eq!(
            check(Driver::Sqlite, "SELECT :a, @b, :a, $c, ':z'", 3).unwrap(),
            "SELECT ?1, ?2, ?1, ?3, ':z'"
        );
        assert_eq!(
            check(Driver::Sqlite, "SELECT ?2, ?", 3).unwrap(),
            "SELECT ?2, ?3"
        );
        assert!(matches!(
            check(Driver::Sqlite, "SELECT ?5", 1),
            Err(DbError::ParamCount {
                expected: 5,
                given: 1
            })
        ));
    }
}
