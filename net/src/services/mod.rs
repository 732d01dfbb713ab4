//! The network services the kernel runs, each as async tasks on the stack.

pub mod echo;
pub mod netserver;
