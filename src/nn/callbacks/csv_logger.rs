//! `CsvLogger`: each epoch's metrics as a CSV row.

use std::fs;
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::path::PathBuf;

use super::{Callback, Logs};
use crate::error::{Error, Result};
use crate::nn::backend::Backend;
use crate::nn::io::write_atomic;
use crate::nn::model::Sequential;

/// Keras `CSVLogger`: a header `epoch,<keys…>` (keys sorted, as Keras writes them) and one row
/// per epoch, the epoch counted from 0 as in Keras' files. The file is rewritten atomically
/// after each epoch, so it is complete at every moment; with `append`, the rows of an earlier
/// file are kept (its header must match).
#[derive(Clone, Debug)]
pub struct CsvLogger {
    path: PathBuf,
    separator: u8,
    append: bool,
    keys: Vec<String>,
    content: Vec<u8>,
}

impl CsvLogger {
    /// Logs to `path`, comma-separated, replacing an existing file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            separator: b',',
            append: false,
            keys: Vec::new(),
            content: Vec::new(),
        }
    }

    /// The field separator (an ASCII character).
    pub fn separator(mut self, separator: u8) -> Self {
        self.separator = separator;
        self
    }

    /// Keep an existing file's rows and add to them.
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    fn writer(&self) -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new()
            .delimiter(self.separator)
            .from_writer(Vec::new())
    }

    fn csv_error(&self, e: csv::Error) -> Error {
        Error::invalid_file(&self.path, e.to_string())
    }

    fn row(&self, fields: impl IntoIterator<Item = String>) -> Result<Vec<u8>> {
        let mut w = self.writer();
        w.write_record(fields).map_err(|e| self.csv_error(e))?;
        w.into_inner()
            .map_err(|e| Error::invalid_file(&self.path, e.to_string()))
    }
}

impl<B: Backend> Callback<B> for CsvLogger {
    fn on_train_begin(&mut self, _model: &mut Sequential<B>, keys: &[String]) -> Result<()> {
        self.keys = keys.to_vec();
        self.keys.sort();
        let header = self.row(std::iter::once("epoch".to_string()).chain(self.keys.clone()))?;
        let existing = if self.append {
            match fs::read(&self.path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        } else {
            Vec::new()
        };
        self.content = if existing.is_empty() {
            header
        } else if existing.starts_with(&header) {
            existing
        } else {
            return Err(Error::invalid_file(
                &self.path,
                "appending to a CSV log whose header differs from this run's metrics",
            ));
        };
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        model: &mut Sequential<B>,
        _epoch: usize,
        logs: &Logs,
    ) -> Result<ControlFlow<()>> {
        let values = self
            .keys
            .iter()
            .map(|k| logs.get(k).map_or_else(String::new, |v| v.to_string()));
        let epoch = model.epochs().saturating_sub(1).to_string();
        let row = self.row(std::iter::once(epoch).chain(values))?;
        self.content.extend_from_slice(&row);
        write_atomic(&self.path, &self.content)?;
        Ok(ControlFlow::Continue(()))
    }
}
