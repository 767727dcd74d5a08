//! EC2 access: client construction, credentials, waiters and errors.
