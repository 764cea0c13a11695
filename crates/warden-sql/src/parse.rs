//! Parsing one statement, within bounds: a length limit, the parser's recursion limit, and a
//! budget of operators. sqlparser builds a chain of binary operators (`1 + 1 + … + 1`) or
//! postfix operators (`x::t::t…`) in a loop, not by recursion, so the recursion limit does not
//! bound the depth of the tree it returns; every later pass over that tree (analysis, rewrite,
//! printing, dropping) recurses, and a deep enough tree overflows the stack and aborts the
//! process. Counting the operator tokens before parsing bounds the depth of every tree: each
//! level of a chain takes an operator, each other level a recursion of the parser.

use sqlparser::ast::Statement;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserOptions};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::dialect::{Dialect, DialectRules};
use crate::error::{DenyReason, SqlError};

/// The default length limit of a statement, in bytes.
pub const DEFAULT_MAX_STATEMENT_LEN: usize = 1 << 20;
/// The default operator budget of a statement.
pub const DEFAULT_MAX_OPERATORS: usize = 4096;

/// The server's string-lexing settings, as the adapters read them when connecting
/// (`SqlxPostgres::string_settings`, `SqlxMySql::string_settings`) and
/// [`SqlPolicyBuilder::string_settings`](crate::SqlPolicyBuilder::string_settings) takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StringSettings {
    /// A backslash in `'…'` escapes: MySQL without `NO_BACKSLASH_ESCAPES`, PostgreSQL with
    /// `standard_conforming_strings = off`.
    pub backslash_escapes: bool,
    /// `"…"` is an identifier in MySQL (`ANSI_QUOTES`).
    pub ansi_quotes: bool,
}

/// The bounds of one parse, and what the server's string-lexing settings are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) recursion: usize,
    pub(crate) length: usize,
    pub(crate) operators: usize,
    /// Whether a backslash escapes in `'…'` (MySQL without `NO_BACKSLASH_ESCAPES`;
    /// PostgreSQL with `standard_conforming_strings = off`); `None`: unknown.
    pub(crate) backslash_escapes: Option<bool>,
    /// Whether `"…"` is an identifier in MySQL (`ANSI_QUOTES`); `None`: unknown.
    pub(crate) ansi_quotes: Option<bool>,
}

impl Limits {
    /// The bounds of Warden's own templates.
    pub(crate) const TEMPLATES: Self = Self {
        recursion: 50,
        length: DEFAULT_MAX_STATEMENT_LEN,
        operators: DEFAULT_MAX_OPERATORS,
        backslash_escapes: None,
        ansi_quotes: None,
    };
}

/// Refuses tokens whose meaning depends on server settings the policy does not know (or
/// knows to differ from how the parser reads them), and MySQL names outside ASCII (whose case
/// folding follows the server's character set and collation).
fn check_lexing(
    rules: &dyn DialectRules,
    tokens: &[TokenWithSpan],
    limits: &Limits,
) -> Result<(), SqlError> {
    let dialect = rules.dialect();
    // How sqlparser reads them: MySQL with backslash escapes and `"…"` strings; PostgreSQL
    // with standard conforming strings.
    let (parser_escapes, setting) = match dialect {
        Dialect::MySql => (true, "NO_BACKSLASH_ESCAPES"),
        Dialect::Postgres => (false, "standard_conforming_strings"),
        _ => return Ok(()),
    };
    for t in tokens {
        match &t.token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)
                if s.contains('\\') && limits.backslash_escapes != Some(parser_escapes) =>
            {
                return Err(DenyReason::Unsupported(format!(
                    "a string literal with a backslash while `{setting}` is {} (configure \
                     `backslash_escapes` from the server's setting)",
                    match limits.backslash_escapes {
                        None => "unknown",
                        Some(_) => "set the other way",
                    }
                ))
                .into());
            }
            Token::DoubleQuotedString(_)
                if dialect == Dialect::MySql && limits.ansi_quotes != Some(false) =>
            {
                return Err(DenyReason::Unsupported(
                    "a double-quoted string while `ANSI_QUOTES` is unknown or on (use '…', or \
                     configure `ansi_quotes` from the server's sql_mode)"
                        .into(),
                )
                .into());
            }
            Token::Word(w) if dialect == Dialect::MySql && !w.value.is_ascii() => {
                return Err(DenyReason::Unsupported(format!(
                    "the name `{}` outside ASCII (MySQL folds it by the server's collation)",
                    w.value
                ))
                .into());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Words that combine or qualify expressions the way operator symbols do.
const OPERATOR_WORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::XOR,
    Keyword::NOT,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::RLIKE,
    Keyword::REGEXP,
    Keyword::GLOB,
    Keyword::MATCH,
    Keyword::SIMILAR,
    Keyword::IN,
    Keyword::BETWEEN,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::DIV,
    Keyword::MOD,
    Keyword::ESCAPE,
    Keyword::OVERLAPS,
    Keyword::MEMBER,
    Keyword::OPERATOR,
];

/// Whether a token can add a level to an expression tree without a recursion of the parser.
fn is_operator(token: &Token) -> bool {
    match token {
        Token::Word(w) => w.quote_style.is_none() && OPERATOR_WORDS.contains(&w.keyword),
        Token::EOF
        | Token::Number(..)
        | Token::Char(_)
        | Token::Comma
        | Token::Whitespace(_)
        | Token::LParen
        | Token::RParen
        | Token::SemiColon
        | Token::RBracket
        | Token::LBrace
        | Token::RBrace
        | Token::Placeholder(_)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::TripleSingleQuotedString(_)
        | Token::TripleDoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::DoubleQuotedByteStringLiteral(_)
        | Token::TripleSingleQuotedByteStringLiteral(_)
        | Token::TripleDoubleQuotedByteStringLiteral(_)
        | Token::SingleQuotedRawStringLiteral(_)
        | Token::DoubleQuotedRawStringLiteral(_)
        | Token::TripleSingleQuotedRawStringLiteral(_)
        | Token::TripleDoubleQuotedRawStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::QuoteDelimitedStringLiteral(_)
        | Token::NationalQuoteDelimitedStringLiteral(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_) => false,
        _ => true,
    }
}

/// The operators of a token list; refused beyond the budget.
fn check_operators(tokens: &[TokenWithSpan], limit: usize) -> Result<usize, SqlError> {
    let count = tokens.iter().filter(|t| is_operator(&t.token)).count();
    if count > limit {
        return Err(DenyReason::TooComplex(format!(
            "{count} operators, more than the {limit} a statement may have"
        ))
        .into());
    }
    Ok(count)
}

/// Statements with more operators than this are analysed and rewritten on a thread with a
/// stack of [`DEEP_STACK`] bytes: sqlparser's visitors and printer grow their stack as they
/// need, but cloning a tree (and the walk's own recursion) does not.
pub(crate) const DEEP: usize = 64;
/// The stack of a deep statement's thread (reserved, not committed, until used).
const DEEP_STACK: usize = 256 << 20;

/// Runs `f` on a thread with a large stack; a statement is refused if none can be started.
pub(crate) fn on_deep_stack<T: Send>(
    f: impl FnOnce() -> Result<T, SqlError> + Send,
) -> Result<T, SqlError> {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("warden-sql-deep".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, f)
        {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(DenyReason::TooComplex(format!(
                "no thread to analyse a large statement on: {e}"
            ))
            .into()),
        }
    })
}

/// Statement keywords that are refused even when the parser does not know their syntax.
const REFUSED_KEYWORDS: &[&str] = &[
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLUSTER",
    "COMMENT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DECLARE",
    "DESC",
    "DESCRIBE",
    "DETACH",
    "DISCARD",
    "DO",
    "DROP",
    "EXECUTE",
    "EXPLAIN",
    "FLUSH",
    "GRANT",
    "HANDLER",
    "IMPORT",
    "INSTALL",
    "KILL",
    "LISTEN",
    "LOAD",
    "LOCK",
    "NOTIFY",
    "OPTIMIZE",
    "PRAGMA",
    "PREPARE",
    "REASSIGN",
    "REFRESH",
    "REINDEX",
    "RELEASE",
    "RENAME",
    "REPAIR",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SECURITY",
    "SET",
    "SHOW",
    "SHUTDOWN",
    "START",
    "TRUNCATE",
    "UNLISTEN",
    "UNLOCK",
    "USE",
    "VACUUM",
];

/// `TABLE t` (and any set operation or `ORDER BY` after it) as one query, then at most a `;`.
fn parse_table_command(
    parser: &mut Parser<'_>,
) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    let query = parser.parse_query()?;
    let mut statements = vec![Statement::Query(query)];
    let _ = parser.consume_token(&Token::SemiColon);
    if parser.peek_token().token != Token::EOF {
        // A second statement: let the count refuse it.
        statements.extend(parser.parse_statements()?);
    }
    Ok(statements)
}

/// Parses exactly one statement, with its operator count; a failure is classified (several statements, a refused
/// kind) when the tokens tell.
pub(crate) fn parse_one(
    rules: &dyn DialectRules,
    sql: &str,
    limits: Limits,
) -> Result<(Statement, usize), SqlError> {
    if sql.len() > limits.length {
        return Err(DenyReason::TooComplex(format!(
            "{} bytes, more than the {} a statement may have",
            sql.len(),
            limits.length
        ))
        .into());
    }
    let mut operators = 0;
    let parsed = match Tokenizer::new(rules.parser(), sql)
        .with_unescape(false)
        .tokenize_with_location()
    {
        Ok(tokens) => {
            operators = check_operators(&tokens, limits.operators)?;
            check_lexing(rules, &tokens, &limits)?;
            let table_command = tokens
                .iter()
                .find(|t| !matches!(t.token, Token::Whitespace(_)))
                .is_some_and(|t| {
                    matches!(&t.token, Token::Word(w)
                        if w.keyword == Keyword::TABLE && w.quote_style.is_none())
                });
            let mut parser = Parser::new(rules.parser())
                .with_recursion_limit(limits.recursion)
                .with_options(ParserOptions::new().with_unescape(false))
                .with_tokens_with_locations(tokens);
            if table_command {
                // `TABLE t` is a query the statement parser does not start with.
                parse_table_command(&mut parser)
            } else {
                parser.parse_statements()
            }
        }
        Err(e) => Err(e.into()),
    };
    match parsed {
        Ok(mut statements) => match statements.len() {
            0 => Err(DenyReason::EmptyStatement.into()),
            1 => statements
                .pop()
                .map(|s| (s, operators))
                .ok_or_else(|| DenyReason::EmptyStatement.into()),
            n => Err(DenyReason::MultipleStatements(n).into()),
        },
        Err(error) => {
            let Ok(tokens) = Tokenizer::new(rules.parser(), sql)
                .with_unescape(false)
                .tokenize()
            else {
                return Err(SqlError::Parse(error.to_string()));
            };
            let significant: Vec<&Token> = tokens
                .iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .collect();
            let groups = significant
                .split(|t| matches!(t, Token::SemiColon))
                .filter(|g| !g.is_empty())
                .count();
            if groups > 1 {
                return Err(DenyReason::MultipleStatements(groups).into());
            }
            if groups == 0 {
                return Err(DenyReason::EmptyStatement.into());
            }
            if let Some(Token::Word(w)) = significant.first() {
                let upper = w.value.to_ascii_uppercase();
                if w.quote_style.is_none() && REFUSED_KEYWORDS.contains(&upper.as_str()) {
                    return Err(DenyReason::StatementKind(upper).into());
                }
            }
            Err(SqlError::Parse(error.to_string()))
        }
    }
}
