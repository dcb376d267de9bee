//! The commands, the top floor: each reads its arguments (cli.rs) and drives the layers
//! below. No command imports another; what two share lives in a lower folder.

pub mod chaos;
pub mod ci;
pub mod compare;
pub mod limits;
pub mod list;
pub mod report;
pub mod run;
pub mod tune;
pub mod watchcost;
