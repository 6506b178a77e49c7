//! Tokens of a SQL92 filter expression, with the rules of RocketMQ's `SelectorParser.jj`:
//! the longest match wins, a keyword beats an identifier of the same length, keywords are
//! case-insensitive.
//!
//! | token | form |
//! |---|---|
//! | keywords | `NOT AND OR BETWEEN IN TRUE FALSE NULL IS CONTAINS STARTSWITH ENDSWITH`, any case |
//! | decimal | `0`, or `[1-9][0-9]*` with an optional `l`/`L` (so `007` is `0`, `0`, `7`) |
//! | float | `1.5`, `1.`, `.5`, `1e5`, `1.5E-3` (`[0-9]+ . [0-9]* exp?`, `. [0-9]+ exp?`, `[0-9]+ exp`) |
//! | string | `'…'`, `''` inside stands for one quote |
//! | identifier | `[a-zA-Z_$][a-zA-Z0-9_$]*` |
//! | operators | `=  <>  >  >=  <  <=  (  )  ,  +  -` |
//! | skipped | space, tab, CR, LF, form feed; `-- …` to the end of the line; `/* … */` |

use std::fmt;

use super::SyntaxError;

/// What a token is; the literal ones borrow their text from the expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Tok<'s> {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// A decimal integer, as written (with its `L`, if any).
    Decimal(&'s str),
    /// A floating-point number, as written.
    Float(&'s str),
    /// A string literal, quotes included and `''` not yet undone.
    Str(&'s str),
    /// A property name.
    Id(&'s str),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    /// The end of the expression.
    Eof,
}

/// A token and the 1-based character column it starts at.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'s> {
    pub(super) tok: Tok<'s>,
    pub(super) col: usize,
}

const KEYWORDS: [(&str, Tok<'static>); 12] = [
    ("NOT", Tok::Not),
    ("AND", Tok::And),
    ("OR", Tok::Or),
    ("BETWEEN", Tok::Between),
    ("IN", Tok::In),
    ("TRUE", Tok::True),
    ("FALSE", Tok::False),
    ("NULL", Tok::Null),
    ("IS", Tok::Is),
    ("CONTAINS", Tok::Contains),
    ("STARTSWITH", Tok::StartsWith),
    ("ENDSWITH", Tok::EndsWith),
];

impl fmt::Display for Tok<'_> {
    /// How an error message names the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |f: &mut fmt::Formatter<'_>, s: &str| write!(f, "'{s}'");
        match self {
            Tok::Decimal(s) | Tok::Float(s) => write!(f, "number {s}"),
            Tok::Str(s) => write!(f, "string {s}"),
            Tok::Id(s) => write!(f, "property name {s}"),
            Tok::Eq => op(f, "="),
            Tok::Ne => op(f, "<>"),
            Tok::Gt => op(f, ">"),
            Tok::Ge => op(f, ">="),
            Tok::Lt => op(f, "<"),
            Tok::Le => op(f, "<="),
            Tok::LParen => op(f, "("),
            Tok::RParen => op(f, ")"),
            Tok::Comma => op(f, ","),
            Tok::Plus => op(f, "+"),
            Tok::Minus => op(f, "-"),
            Tok::Eof => f.write_str("the end of the expression"),
            keyword => {
                let name = KEYWORDS
                    .iter()
                    .find(|(_, t)| t == keyword)
                    .map_or("?", |(n, _)| n);
                write!(f, "{name}")
            }
        }
    }
}

/// Splits `src` into tokens, ending with [`Tok::Eof`].
pub(super) fn tokenize(src: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
    let mut lexer = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let token = lexer.next()?;
        out.push(token);
        if token.tok == Tok::Eof {
            return Ok(out);
        }
    }
}

struct Lexer<'s> {
    src: &'s str,
    bytes: &'s [u8],
    /// Byte position.
    pos: usize,
    /// 1-based character column of `pos`.
    col: usize,
}

impl<'s> Lexer<'s> {
    fn peek(&self, ahead: usize) -> u8 {
        self.bytes.get(self.pos + ahead).copied().unwrap_or(0)
    }

    /// Moves to byte position `to`, counting the characters passed.
    fn advance_to(&mut self, to: usize) {
        let to = to.min(self.bytes.len());
        self.col += self.src[self.pos..to].chars().count();
        self.pos = to;
    }

    /// Skips blanks and comments.
    fn skip(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (b' ' | b'\t' | b'\n' | b'\r' | 0x0c, _) => self.advance_to(self.pos + 1),
                (b'-', b'-') => {
                    // To the end of the line. RocketMQ's grammar wants a line break after it;
                    // at the end of the expression there is none, and its parser then happens
                    // to ignore the rest anyway: here the comment simply ends there.
                    let rest = &self.bytes[self.pos..];
                    let end = rest
                        .iter()
                        .position(|&b| b == b'\n' || b == b'\r')
                        .map_or(self.bytes.len(), |i| self.pos + i + 1);
                    self.advance_to(end);
                }
                (b'/', b'*') => {
                    let start = self.col;
                    let body = &self.src[self.pos + 2..];
                    match body.find("*/") {
                        Some(i) => self.advance_to(self.pos + 2 + i + 2),
                        None => {
                            return Err(SyntaxError::new(
                                start,
                                "unterminated comment: '/*' without a closing '*/'",
                            ));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next(&mut self) -> Result<Token<'s>, SyntaxError> {
        self.skip()?;
        let col = self.col;
        let start = self.pos;
        let token = |tok| Ok(Token { tok, col });
        let c = self.peek(0);
        if start >= self.bytes.len() {
            return token(Tok::Eof);
        }
        let (tok, len) = match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => {
                let len = self.bytes[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$'))
                    .unwrap_or(self.bytes.len() - start);
                let word = &self.src[start..start + len];
                let tok = KEYWORDS
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(word))
                    .map_or(Tok::Id(word), |(_, t)| *t);
                (tok, len)
            }
            b'0'..=b'9' | b'.' => match number(&self.bytes[start..]) {
                Some((true, len)) => (Tok::Float(&self.src[start..start + len]), len),
                Some((false, len)) => (Tok::Decimal(&self.src[start..start + len]), len),
                None => return Err(SyntaxError::new(col, "unexpected character '.'")),
            },
            b'\'' => {
                let mut i = start + 1;
                loop {
                    match self.bytes.get(i) {
                        None => {
                            return Err(SyntaxError::new(
                                col,
                                "unterminated string: a ' without its closing '",
                            ));
                        }
                        Some(b'\'') if self.bytes.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => break,
                        Some(_) => i += 1,
                    }
                }
                (Tok::Str(&self.src[start..=i]), i + 1 - start)
            }
            b'=' => (Tok::Eq, 1),
            b'<' => match self.peek(1) {
                b'>' => (Tok::Ne, 2),
                b'=' => (Tok::Le, 2),
                _ => (Tok::Lt, 1),
            },
            b'>' => match self.peek(1) {
                b'=' => (Tok::Ge, 2),
                _ => (Tok::Gt, 1),
            },
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('?');
                let hint = match ch {
                    '!' => " (not equal is '<>')",
                    '&' | '|' => " (use AND / OR)",
                    '"' => " (strings are in single quotes)",
                    _ => "",
                };
                return Err(SyntaxError::new(
                    col,
                    format!("unexpected character {ch:?}{hint}"),
                ));
            }
        };
        self.advance_to(start + len);
        token(tok)
    }
}

/// The longest number at the start of `b`: whether it is a float, and its length in bytes;
/// `None` for a lone `.`.
fn number(b: &[u8]) -> Option<(bool, usize)> {
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    // An exponent at `at`: its length, if it is one.
    let exponent = |at: usize| {
        if !matches!(b.get(at), Some(b'e' | b'E')) {
            return 0;
        }
        let sign = usize::from(matches!(b.get(at + 1), Some(b'+' | b'-')));
        match digits(at + 1 + sign) {
            0 => 0,
            n => 1 + sign + n,
        }
    };
    let int = digits(0);
    if b.get(int) == Some(&b'.') {
        let frac = digits(int + 1);
        if int == 0 && frac == 0 {
            return None;
        }
        let end = int + 1 + frac;
        return Some((true, end + exponent(end)));
    }
    match exponent(int) {
        0 if b[0] == b'0' => Some((false, 1)),
        0 => {
            let suffix = usize::from(matches!(b.get(int), Some(b'l' | b'L')));
            Some((false, int + suffix))
        }
        e => Some((true, int + e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<(Tok<'_>, usize)> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| (t.tok, t.col))
            .collect()
    }

    #[test]
    fn numbers_follow_the_longest_match() {
        use Tok::*;
        assert_eq!(
            toks("007"),
            [
                (Decimal("0"), 1),
                (Decimal("0"), 2),
                (Decimal("7"), 3),
                (Eof, 4)
            ]
        );
        assert_eq!(
            toks("12L 0L"),
            [
                (Decimal("12L"), 1),
                (Decimal("0"), 5),
                (Id("L"), 6),
                (Eof, 7)
            ]
        );
        assert_eq!(
            toks("5. .5 1e5 1E+5 2.5e-3"),
            [
                (Float("5."), 1),
                (Float(".5"), 4),
                (Float("1e5"), 7),
                (Float("1E+5"), 11),
                (Float("2.5e-3"), 16),
                (Eof, 22)
            ]
        );
        assert_eq!(toks("1e"), [(Decimal("1"), 1), (Id("e"), 2), (Eof, 3)]);
        assert_eq!(
            toks("1.5.3"),
            [(Float("1.5"), 1), (Float(".3"), 4), (Eof, 6)]
        );
        assert_eq!(toks("0123.5"), [(Float("0123.5"), 1), (Eof, 7)]);
        assert!(tokenize(".").is_err());
    }

    #[test]
    fn keywords_ignore_case_and_lose_to_longer_names() {
        use Tok::*;
        assert_eq!(
            toks("not Not NOTE and_x In"),
            [
                (Not, 1),
                (Not, 5),
                (Id("NOTE"), 9),
                (Id("and_x"), 14),
                (In, 20),
                (Eof, 22)
            ]
        );
    }

    #[test]
    fn strings_comments_and_columns() {
        use Tok::*;
        assert_eq!(
            toks("'it''s' = 'é'"),
            [(Str("'it''s'"), 1), (Eq, 9), (Str("'é'"), 11), (Eof, 14)]
        );
        let e = tokenize("a = 'é").unwrap_err();
        assert_eq!(e.column, 5);
        assert_eq!(
            toks("/* é */ a -- x\n<>--y"),
            [(Id("a"), 9), (Ne, 16), (Eof, 21)]
        );
        assert_eq!(tokenize("a /* b").unwrap_err().column, 3);
        assert_eq!(tokenize("é != 1").unwrap_err().column, 1);
        assert_eq!(tokenize("ab != 1").unwrap_err().column, 4);
    }
}
