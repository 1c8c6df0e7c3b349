//! Finds the placeholders in a statement's text, the way each database's own lexer does:
//! not inside string literals, quoted identifiers or comments.
//!
//! | | MySQL | PostgreSQL | SQLite |
//! |---|---|---|---|
//! | placeholders | `?` | `$n` | `?`, `?NNN`, `:name`, `@name`, `$name` |
//! | strings | `'…'`, `"…"` (backslash escapes) | `'…'`, `E'…'` (escapes), `$tag$…$tag$` | `'…'` |
//! | identifiers | `` `…` `` | `"…"` | `"…"`, `` `…` ``, `[…]` |
//! | comments | `-- ` (a space after), `#`, `/* */` | `--`, `/* */` (nested) | `--`, `/* */` |
//!
//! A `$n` is reported on every database (so MySQL and SQLite can refuse it by name), and a
//! `?` on PostgreSQL too (its JSON operators look the same, so it is only a hint there).

use std::ops::Range;

use super::Driver;

/// One placeholder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placeholder<'a> {
    /// `?`: the next parameter.
    Next,
    /// `?NNN` (SQLite): parameter NNN.
    Numbered(usize),
    /// `:name`, `@name`, `$name` (SQLite), prefix included: one parameter per name.
    Named(&'a str),
    /// `$n`: PostgreSQL's parameter n.
    Dollar(usize),
}

/// Calls `found` with each placeholder of `sql` and where it is, in order.
pub(crate) fn scan<'a>(
    driver: Driver,
    sql: &'a str,
    mut found: impl FnMut(Range<usize>, Placeholder<'a>),
) {
    let b = sql.as_bytes();
    let mysql = driver == Driver::Mysql;
    let postgres = driver == Driver::Postgres;
    let sqlite = driver == Driver::Sqlite;
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        i = match b[i] {
            b'\'' => {
                // PostgreSQL's E'…' takes backslash escapes; its standard strings do not.
                let escapes = mysql
                    || (postgres
                        && i > 0
                        && matches!(b[i - 1], b'E' | b'e')
                        && (i < 2 || !is_ident(b[i - 2])));
                skip_quoted(b, i, b'\'', escapes)
            }
            b'"' => skip_quoted(b, i, b'"', mysql),
            b'`' if !postgres => skip_quoted(b, i, b'`', false),
            b'[' if sqlite => find(b, i + 1, b"]").map_or(b.len(), |end| end + 1),
            b'-' if next == Some(b'-')
                && (!mysql
                    || b.get(i + 2)
                        .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control())) =>
            {
                find(b, i + 2, b"\n").map_or(b.len(), |end| end + 1)
            }
            b'#' if mysql => find(b, i + 1, b"\n").map_or(b.len(), |end| end + 1),
            // MySQL runs the text of `/*! … */` and reads hints in `/*+ … */`: not comments.
            b'/' if next == Some(b'*') && !(mysql && matches!(b.get(i + 2), Some(b'!' | b'+'))) => {
                skip_block_comment(b, i, postgres)
            }
            b'?' => {
                let digits = if sqlite { digits_at(b, i + 1) } else { 0 };
                let end = i + 1 + digits;
                let p = if digits > 0 {
                    Placeholder::Numbered(number(&b[i + 1..end]))
                } else {
                    Placeholder::Next
                };
                found(i..end, p);
                end
            }
            b'$' if i > 0 && is_ident(b[i - 1]) => i + 1, // inside an identifier (`a$1`)
            b'$' if next.is_some_and(|c| c.is_ascii_digit()) => {
                let end = i + 1 + digits_at(b, i + 1);
                if b.get(end).is_some_and(|&c| is_ident(c)) {
                    end // `$1abc`: an identifier on MySQL, not a placeholder anywhere
                } else {
                    found(i..end, Placeholder::Dollar(number(&b[i + 1..end])));
                    end
                }
            }
            b'$' if postgres => skip_dollar_quoted(b, i),
            b':' | b'@' | b'$' if sqlite && next.is_some_and(is_ident) => {
                let end = i + 1 + b[i + 1..].iter().take_while(|&&c| is_ident(c)).count();
                found(i..end, Placeholder::Named(&sql[i..end]));
                end
            }
            _ => i + 1,
        };
    }
}

/// A byte that may continue an identifier (non-ASCII bytes are letters to all three).
fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn digits_at(b: &[u8], at: usize) -> usize {
    b.get(at..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

/// A run of ASCII digits as a number (saturating: a huge one is simply too many).
fn number(digits: &[u8]) -> usize {
    digits.iter().fold(0usize, |n, d| {
        n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
    })
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// From an opening quote at `start` to just past its closing one (a doubled quote is one
/// quote character); an unterminated literal runs to the end.
fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if backslash_escapes => i += 2,
            c if c == quote => {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return i + 1;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_block_comment(b: &[u8], start: usize, nested: bool) -> usize {
    let mut depth = 1;
    let mut i = start + 2;
    while i < b.len() {
        if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else if nested && b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    b.len()
}

/// PostgreSQL's `$tag$ … $tag$` (the tag may be empty); a `$` that opens no such string is
/// just a character.
fn skip_dollar_quoted(b: &[u8], start: usize) -> usize {
    let tag_len = b[start + 1..]
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80)
        .count();
    let close = start + 1 + tag_len;
    if b.get(close) != Some(&b'$') || b.get(start + 1).is_some_and(|c| c.is_ascii_digit()) {
        return start + 1;
    }
    let tag = &b[start..=close];
    find(b, close + 1, tag).map_or(b.len(), |end| end + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(driver: Driver, sql: &str) -> Vec<Placeholder<'_>> {
        let mut out = Vec::new();
        scan(driver, sql, |_, p| out.push(p));
        out
    }

    use Placeholder::{Dollar, Named, Next, Numbered};

    #[test]
    fn mysql_placeholders_outside_literals_and_comments_are_found() {
        let sql = "SELECT ?, '?', \"?\", `?`, 'it''s ?', 'a\\'?' -- ?\n, ? # ?\n /* ? */ ?";
        assert_eq!(found(Driver::Mysql, sql), [Next, Next, Next]);
        // `--` without a space is two minus signs; `/*! */` is run by MySQL.
        assert_eq!(found(Driver::Mysql, "SELECT 1--? \n"), [Next]);
        assert_eq!(found(Driver::Mysql, "SELECT /*!50000 ? */ 1"), [Next]);
        assert_eq!(found(Driver::Mysql, "SELECT $1, a$1, $1a"), [Dollar(1)]);
    }

    #[test]
    fn postgres_dollar_numbers_outside_literals_and_comments_are_found() {
        let sql = "SELECT $1, '$2', \"$3\", E'\\'$4', $$ $5 $$, $tag$ $6 $tag$ -- $7\n /* /* $8 */ $9 */ $10";
        assert_eq!(found(Driver::Postgres, sql), [Dollar(1), Dollar(10)]);
        assert_eq!(found(Driver::Postgres, "SELECT '{}'::jsonb ? 'a'"), [Next]);
        assert_eq!(found(Driver::Postgres, "SELECT 'x' -- ?"), []);
    }

    #[test]
    fn sqlite_placeholders_of_every_form_are_found() {
        let sql = "SELECT ?, ?7, :a, @b, $c, $2, '?', \"?\", `?`, [?], -- ?\n /* ? */ :a";
        assert_eq!(
            found(Driver::Sqlite, sql),
            [
                Next,
                Numbered(7),
                Named(":a"),
                Named("@b"),
                Named("$c"),
                Dollar(2),
                Named(":a")
            ]
        );
    }

    #[test]
    fn unterminated_literal_hides_the_rest() {
        assert_eq!(found(Driver::Sqlite, "SELECT '?"), []);
        assert_eq!(found(Driver::Postgres, "SELECT $$ $1"), []);
        assert_eq!(found(Driver::Mysql, "SELECT /* ?"), []);
    }
}
