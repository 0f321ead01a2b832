//! What a notification sends (SPEC §13), built from a finished job as plain data: the signed
//! webhook (`webhook`), the Slack-style text (`slack`) and the command's environment and stdin
//! (`command`); which notifications a job's end makes (`plan`) and what a try decides
//! (`settle`). No IO here: the delivery (`crate::delivery`: HTTP, processes, the store) calls
//! these.
//!
//! A notification is built once when its job ends: the webhook body and its `timestamp` stay the
//! same on every try, while the signature headers are made per try, so that a retry an hour later
//! is not refused by the receiver's timestamp tolerance (5 minutes in the Standard Webhooks
//! libraries).

pub mod command;
pub mod plan;
pub mod settle;
pub mod slack;
pub mod webhook;

#[cfg(test)]
mod tests;
