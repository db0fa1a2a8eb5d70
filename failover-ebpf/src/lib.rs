//! Empty library target: lets `failover-user` list this crate as a build-dependency, so cargo
//! rebuilds the XDP object when it changes. The program itself is `src/main.rs`.
#![no_std]
