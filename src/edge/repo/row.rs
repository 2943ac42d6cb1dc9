//! D1's answers read by hand: a row is a plain JS object of column → value, and each row
//! type names its columns with [`d1_row!`]. worker's `first`, `results` and `meta` go
//! through `serde_wasm_bindgen`, whose per-type code was about 14 KB of the gzipped wasm;
//! the rows here hold only text, numbers and NULLs, so a getter per column does the job.

use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{self, Array, Reflect};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys;
use worker::{D1Database, D1PreparedStatement};

use crate::core::error::ApiError;

type Result<T> = std::result::Result<T, ApiError>;

/// One result row.
pub struct Row(JsValue);

impl Row {
    /// The column's value, or an outage if it is missing or of another type: the schema
    /// and this build disagree, which is not the caller's fault.
    pub fn column<T: Column>(&self, name: &str) -> Result<T> {
        let value = Reflect::get(&self.0, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED);
        T::from_js(value).ok_or_else(|| {
            ApiError::unavailable(
                "The database is unavailable",
                format!("d1: column {name} is missing or not of the expected type"),
            )
        })
    }
}

/// A column type: TEXT as `String`, INTEGER and REAL as `f64` (what D1 hands back), and
/// `Option` of either for a nullable column (NULL or an absent column is `None`).
pub trait Column: Sized {
    fn from_js(value: JsValue) -> Option<Self>;
}

impl Column for String {
    fn from_js(value: JsValue) -> Option<Self> {
        value.as_string()
    }
}

impl Column for f64 {
    fn from_js(value: JsValue) -> Option<Self> {
        value.as_f64()
    }
}

impl<T: Column> Column for Option<T> {
    fn from_js(value: JsValue) -> Option<Self> {
        if value.is_null() || value.is_undefined() {
            Some(None)
        } else {
            T::from_js(value).map(Some)
        }
    }
}

pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self>;
}

/// A struct whose fields are the columns of a row, and its [`FromRow`]: each field is read
/// from the column of the same name.
macro_rules! d1_row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident {
        $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])* $vis struct $name { $($(#[$field_meta])* $field_vis $field: $ty),* }

        impl $crate::edge::repo::row::FromRow for $name {
            fn from_row(
                row: &$crate::edge::repo::row::Row,
            ) -> ::std::result::Result<Self, $crate::core::error::ApiError> {
                Ok($name { $($field: row.column(stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use d1_row;

/// A rejected D1 call: an outage, with D1's message (and its cause's) in the log only.
fn failed(error: JsValue) -> ApiError {
    let text = match error.dyn_ref::<js_sys::Error>() {
        Some(e) => match e.cause().dyn_ref::<js_sys::Error>() {
            Some(cause) => format!(
                "{}: {}",
                String::from(e.message()),
                String::from(cause.message())
            ),
            None => String::from(e.message()),
        },
        None => format!("{error:?}"),
    };
    ApiError::unavailable("The database is unavailable", format!("d1: {text}"))
}

async fn settle(promise: std::result::Result<js_sys::Promise, JsValue>) -> Result<JsValue> {
    JsFuture::from(promise.map_err(failed)?)
        .await
        .map_err(failed)
}

fn rows<T: FromRow>(result: &JsValue) -> Result<Vec<T>> {
    let result: &worker_sys::D1Result = result.unchecked_ref();
    match result.results().map_err(failed)? {
        Some(rows) => rows.iter().map(|r| T::from_row(&Row(r))).collect(),
        None => Ok(Vec::new()),
    }
}

/// The statement's first row, if any.
pub async fn first<T: FromRow>(statement: &D1PreparedStatement) -> Result<Option<T>> {
    let row = settle(statement.inner().first(None)).await?;
    if row.is_null() || row.is_undefined() {
        return Ok(None);
    }
    T::from_row(&Row(row)).map(Some)
}

/// All the statement's rows.
pub async fn all<T: FromRow>(statement: &D1PreparedStatement) -> Result<Vec<T>> {
    rows(&settle(statement.inner().all()).await?)
}

/// The statements as one batch (one transaction); one result per statement.
pub async fn batch(db: &D1Database, statements: Vec<D1PreparedStatement>) -> Result<Vec<JsValue>> {
    let db: &worker_sys::D1Database = db.as_ref().unchecked_ref();
    let statements: Array = statements
        .iter()
        .map(|s| JsValue::from(s.inner().clone()))
        .collect();
    let results = settle(db.batch(statements)).await?;
    Ok(results.unchecked_into::<Array>().to_vec())
}

/// The first row of the `index`th result of a batch.
pub fn first_row<T: FromRow>(results: &[JsValue], index: usize) -> Result<Option<T>> {
    let Some(result) = results.get(index) else {
        return Ok(None);
    };
    let result: &worker_sys::D1Result = result.unchecked_ref();
    match result.results().map_err(failed)? {
        Some(rows) if rows.length() > 0 => T::from_row(&Row(rows.get(0))).map(Some),
        _ => Ok(None),
    }
}

/// Every row of the `index`th result of a batch.
pub fn all_rows<T: FromRow>(results: &[JsValue], index: usize) -> Result<Vec<T>> {
    results.get(index).map_or(Ok(Vec::new()), rows)
}

/// Whether the `index`th statement of a batch changed any row.
pub fn changed(results: &[JsValue], index: usize) -> bool {
    results.get(index).is_some_and(|r| changes(r) > 0)
}

/// Runs one statement; answers how many rows it changed.
pub async fn run(statement: &D1PreparedStatement) -> Result<u64> {
    Ok(changes(&settle(statement.inner().run()).await?))
}

/// A result's `meta.changes`: 0 when it has none.
fn changes(result: &JsValue) -> u64 {
    Reflect::get(result, &JsValue::from_str("meta"))
        .ok()
        .and_then(|meta| Reflect::get(&meta, &JsValue::from_str("changes")).ok())
        .and_then(|changes| changes.as_f64())
        .map_or(0, |n| n.max(0.0) as u64)
}
