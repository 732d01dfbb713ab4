//! The network services the kernel runs, each as async tasks on the stack.

pub mod chargen;
pub mod discard;
pub mod echo;
pub mod netserver;
