//! Domain logic of the actors as plain synchronous code: validation of requests,
//! offer matching, the task launch description, and the instance lifecycle rules.
//! Nothing here sends messages or touches the store; everything is unit-tested.

pub mod actions;
pub mod commands;
pub mod constraints;
pub mod launch;
pub mod lifecycle;
pub mod offers;
pub mod operations;
pub mod placement;
pub mod recovery;
pub mod request;
pub mod updates;
pub mod view;
