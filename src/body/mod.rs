//! Request bodies other than JSON and forms, read into the same JSON shape adnanh/webhook gave
//! them: XML (`application/xml`, `text/xml`) and `multipart/form-data`. Both take the raw body as
//! it was read for the signature, and return plain data.

pub mod multipart;
pub mod xml;
