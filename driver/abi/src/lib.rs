//! The user/kernel contract of the ktimer driver, defined once and shared by the driver and
//! the companion app. `no_std`, no dependencies.
#![no_std]
