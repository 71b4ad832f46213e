//! Tables in files: CSV and Parquet read through polars into the typed columns the statistics
//! take ([`frame`]), the file commands' work on them ([`files`]: compare two files, score a
//! file of predictions, a plain CSV's score and label read directly by `plain_csv`), and the
//! reference files a drift job may read ([`references`]).

pub mod files;
pub mod frame;
mod plain_csv;
pub mod references;
