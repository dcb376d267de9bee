//! Capacity planning: the records tune, sweep, watchcost and run write and report and limits
//! read (records.rs), the machine facts they carry (facts.rs), and the sizing rules that turn
//! them into sysctl values (recommend.rs).

pub mod facts;
pub mod recommend;
pub mod records;
