//! A user-mode model of the Windows kernel timer, DPC and IRQL semantics.
