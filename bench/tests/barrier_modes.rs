//! Each barrier mode runs the instructions it is meant to run.
//!
//! Statically, the test disassembles the built kernel. Every `lfence`,
//! `sfence` and `mfence` outside the in-guest barrier microbenchmark must
//! sit in a block that is entered only when a queue site's mode byte is 1
//! (strong). Every weak full barrier (`lock add dword ptr [rsp], 0` or
//! `xchg` of a 16-bit word in memory) must sit in a block entered only when
//! it is 0 (weak). The barrier functions are `#[inline(always)]`, so
//! they have no symbols of their own; the check instead follows the branch
//! that the inlined `match` on the site's mode compiles to: a byte load of
//! the mode, a compare with 0 or 1, and a conditional jump.
//!
//! Dynamically: a guest's per-site counters, read through the console, move
//! only in the mode that is selected, for each barrier kind.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bench::e2e::options::Mode;
use bench::e2e::records::GuestStats;
use tests::echo_checks::check_tcp_bulk;
use tests::guest::kernel_image;
use tests::{Guest, GuestOptions};
use virtio::barrier::BarrierKind;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Functions of the barrier microbenchmark, which runs both modes on
/// purpose and serialises its TSC reads with `lfence`.
const MICROBENCHMARK_PREFIX: &str = "kernel::barrier_bench::";
/// Predecessor blocks followed through unconditional jumps.
const MAX_JUMP_DEPTH: usize = 4;

/// One instruction: its address and its text, lower-case with single
/// spaces and no space after commas.
#[derive(Clone, Debug)]
struct Instruction {
    address: u64,
    text: String,
}

impl Instruction {
    fn mnemonic(&self) -> &str {
        let mut words = self.text.split(' ');
        let first = words.next().unwrap_or("");
        if first == "lock" {
            return "lock";
        }
        first
    }

    fn operands(&self) -> &str {
        let text = self.text.strip_prefix("lock ").unwrap_or(&self.text);
        text.split_once(' ').map_or("", |(_, operands)| operands)
    }

    fn is_jump(&self) -> bool {
        self.mnemonic().starts_with('j')
    }

    fn is_unconditional_exit(&self) -> bool {
        matches!(self.mnemonic(), "jmp" | "ret" | "ud2")
    }

    /// Target of a direct jump, from `jne 10e7a3 <...>` or `jne 0x10e7a3 <...>`.
    fn jump_target(&self) -> Option<u64> {
        if !self.is_jump() {
            return None;
        }
        let operand = self.operands().split(' ').next()?;
        u64::from_str_radix(operand.trim_start_matches("0x"), 16).ok()
    }

    fn fence(&self) -> Option<&str> {
        matches!(self.mnemonic(), "lfence" | "sfence" | "mfence").then(|| self.mnemonic())
    }

    /// `lock add dword ptr [rsp],0` (GNU prints the 0 as 0x0).
    fn is_locked_stack_add(&self) -> bool {
        matches!(self.text.as_str(), "lock add dword ptr [rsp],0x0" | "lock add dword ptr [rsp],0")
    }

    /// `xchg word ptr [REG],REG`: a 16-bit exchange with memory, implicitly
    /// locked. Register-register `xchg ax,ax` is a two-byte no-op and does
    /// not count.
    fn is_word_exchange_with_memory(&self) -> bool {
        self.mnemonic() == "xchg" && self.operands().starts_with("word ptr [")
    }
}

#[derive(Debug)]
struct Function {
    name: String,
    instructions: Vec<Instruction>,
}

fn disassembler() -> (PathBuf, Vec<&'static str>) {
    if Command::new("objdump").arg("--version").output().is_ok_and(|output| output.status.success()) {
        return (PathBuf::from("objdump"), vec!["-d", "--no-show-raw-insn", "-M", "intel", "-C"]);
    }
    let llvm_arguments = vec!["-d", "--no-show-raw-insn", "--x86-asm-syntax=intel", "-C"];
    if Command::new("llvm-objdump").arg("--version").output().is_ok_and(|output| output.status.success()) {
        return (PathBuf::from("llvm-objdump"), llvm_arguments);
    }
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc runs");
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let rustup_tool = PathBuf::from(sysroot).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objdump");
    assert!(
        rustup_tool.is_file(),
        "no disassembler: install binutils (apt-get install binutils) or run `rustup component add llvm-tools`"
    );
    (rustup_tool, llvm_arguments)
}

fn normalise(text: &str) -> String {
    let without_comment = text.split(" #").next().unwrap_or(text).split("\t#").next().unwrap_or(text);
    let collapsed = without_comment.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_ascii_lowercase().replace(", ", ",")
}

/// Disassembles the kernel into functions. llvm-objdump prints a `lock`
/// prefix on a line of its own; it is joined to the next instruction.
fn disassemble() -> Vec<Function> {
    let image = kernel_image();
    assert!(image.is_file(), "kernel image {} not found: run ./run.sh build first", image.display());
    let (tool, arguments) = disassembler();
    let output = Command::new(&tool)
        .args(&arguments)
        .arg(&image)
        .output()
        .unwrap_or_else(|error| panic!("{} failed to start: {error}", tool.display()));
    assert!(output.status.success(), "{} failed: {}", tool.display(), String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);

    let mut functions: Vec<Function> = Vec::new();
    let mut pending_prefix: Option<(u64, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_suffix(">:").and_then(|rest| rest.split_once(" <")).map(|(_, name)| name) {
            functions.push(Function { name: name.to_string(), instructions: Vec::new() });
            continue;
        }
        let Some((address, instruction)) = line.split_once(':') else { continue };
        let Ok(address) = u64::from_str_radix(address.trim(), 16) else { continue };
        let instruction = normalise(instruction);
        if instruction.is_empty() {
            continue;
        }
        let Some(function) = functions.last_mut() else { continue };
        if instruction == "lock" {
            pending_prefix = Some((address, instruction));
            continue;
        }
        let (address, text) = match pending_prefix.take() {
            Some((prefix_address, prefix)) => (prefix_address, format!("{prefix} {instruction}")),
            None => (address, instruction),
        };
        function.instructions.push(Instruction { address, text });
    }
    functions
}

/// Which mode a block runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Weak,
    Strong,
}

struct Analysis<'a> {
    function: &'a Function,
    jump_targets: HashSet<u64>,
}

impl<'a> Analysis<'a> {
    fn new(function: &'a Function) -> Self {
        let jump_targets = function.instructions.iter().filter_map(Instruction::jump_target).collect();
        Analysis { function, jump_targets }
    }

    fn instruction(&self, index: usize) -> &Instruction {
        &self.function.instructions[index]
    }

    /// Index of the first instruction of the basic block holding `index`.
    fn block_start(&self, index: usize) -> usize {
        let mut start = index;
        while start > 0 {
            let previous = self.instruction(start - 1);
            if self.jump_targets.contains(&self.instruction(start).address) || previous.is_jump() || previous.is_unconditional_exit() {
                break;
            }
            start -= 1;
        }
        start
    }

    /// The mode the block starting at `start` runs in: every edge into it
    /// must be decided by a site's mode byte, the same way.
    fn block_side(&self, start: usize, depth: usize) -> Result<Side, String> {
        let address = self.instruction(start).address;
        let mut sides = Vec::new();
        if start > 0 && !self.instruction(start - 1).is_unconditional_exit() {
            sides.push(self.edge_side(start - 1, false, depth)?);
        }
        for (index, instruction) in self.function.instructions.iter().enumerate() {
            if instruction.jump_target() == Some(address) {
                sides.push(self.edge_side(index, true, depth)?);
            }
        }
        match sides.split_first() {
            None => Err(format!("block at {address:#x} has no predecessor in the function")),
            Some((first, rest)) if rest.iter().all(|side| side == first) => Ok(*first),
            Some(_) => Err(format!("block at {address:#x} is entered from both modes")),
        }
    }

    /// Returns the mode in which the edge from the instruction at `index` is
    /// followed: the jump when `taken`, else the fall-through after it.
    fn edge_side(&self, index: usize, taken: bool, depth: usize) -> Result<Side, String> {
        let jump = self.instruction(index);
        // An unconditional jump, or falling off the end of a block at a jump
        // target, keeps the mode of the block it leaves.
        if jump.mnemonic() == "jmp" || !jump.is_jump() {
            if depth >= MAX_JUMP_DEPTH {
                return Err(format!("too many jumps before {:#x}", jump.address));
            }
            return self.block_side(self.block_start(index), depth + 1);
        }
        let equal_when = match jump.mnemonic() {
            "je" => taken,
            "jne" => !taken,
            other => return Err(format!("edge from `{other}` at {:#x} does not test a mode", jump.address)),
        };
        let compare = (index > 0).then(|| self.instruction(index - 1));
        let Some((register, compared_with_one)) = compare.and_then(mode_compare) else {
            return Err(format!("jump at {:#x} does not follow a compare of a register with 0 or 1", jump.address));
        };
        if !self.loads_mode_byte(self.block_start(index), index - 1, &register) {
            return Err(format!("{register} compared at {:#x} is not a byte loaded in its block", jump.address));
        }
        // Weak is 0 and strong is 1, the declaration order of BarrierMode.
        let strong = equal_when == compared_with_one;
        Ok(if strong { Side::Strong } else { Side::Weak })
    }

    /// Returns whether `register` is loaded from a byte (`movzx REG,byte ptr [...]`)
    /// between `start` and `end` of one block.
    fn loads_mode_byte(&self, start: usize, end: usize, register: &str) -> bool {
        (start..end).any(|index| {
            let instruction = self.instruction(index);
            instruction.mnemonic() == "movzx" && instruction.operands().starts_with(&format!("{register},byte ptr ["))
        })
    }
}

/// `cmp REG,1` gives (REG, true); `cmp REG,0` and `test REG,REG` give
/// (REG, false).
fn mode_compare(instruction: &Instruction) -> Option<(String, bool)> {
    let (left, right) = instruction.operands().split_once(',')?;
    if left.contains('[') {
        return None;
    }
    match (instruction.mnemonic(), right) {
        ("cmp", "0x1" | "1") => Some((left.to_string(), true)),
        ("cmp", "0x0" | "0") => Some((left.to_string(), false)),
        ("test", same) if same == left => Some((left.to_string(), false)),
        _ => None,
    }
}

#[test]
fn kernel_fences_only_on_strong_paths() {
    let functions = disassemble();
    assert!(functions.len() > 100, "the disassembly has only {} functions", functions.len());

    let mut problems = Vec::new();
    let mut fences_seen: HashSet<String> = HashSet::new();
    let (mut locked_adds, mut exchanges) = (0, 0);
    for function in functions.iter().filter(|function| !function.name.starts_with(MICROBENCHMARK_PREFIX)) {
        let analysis = Analysis::new(function);
        for (index, instruction) in function.instructions.iter().enumerate() {
            let expected = if let Some(fence) = instruction.fence() {
                fences_seen.insert(fence.to_string());
                Side::Strong
            } else if instruction.is_locked_stack_add() {
                locked_adds += 1;
                Side::Weak
            } else if instruction.is_word_exchange_with_memory() {
                exchanges += 1;
                Side::Weak
            } else {
                continue;
            };
            let side = analysis.block_side(analysis.block_start(index), 0);
            if side != Ok(expected) {
                problems.push(format!(
                    "{} at {:#x} in {}: expected on the {expected:?} path, found {side:?}",
                    instruction.text, instruction.address, function.name
                ));
            }
        }
    }

    assert!(problems.is_empty(), "barrier instructions outside their mode's path:\n{}", problems.join("\n"));
    for fence in ["lfence", "sfence", "mfence"] {
        assert!(fences_seen.contains(fence), "no {fence} on a strong path: was the barrier code changed?");
    }
    assert!(locked_adds > 0, "no `lock add dword ptr [rsp], 0` on a weak path");
    assert!(exchanges > 0, "no word `xchg` with memory on a weak path");
}

#[test]
fn mode_compare_reads_both_syntaxes() {
    let instruction = |text: &str| Instruction { address: 0, text: normalise(text) };
    assert_eq!(mode_compare(&instruction("cmp    esi,0x1")), Some(("esi".to_string(), true)));
    assert_eq!(mode_compare(&instruction("cmp\tesi, 1")), Some(("esi".to_string(), true)));
    assert_eq!(mode_compare(&instruction("test   dl,dl")), Some(("dl".to_string(), false)));
    assert_eq!(mode_compare(&instruction("cmp    BYTE PTR [rdi+0x158],0x1")), None);
    assert!(instruction("lock add DWORD PTR [rsp],0x0").is_locked_stack_add());
    assert!(instruction("xchg   WORD PTR [rdx],cx").is_word_exchange_with_memory());
    assert!(!instruction("xchg   ax,ax").is_word_exchange_with_memory());
    assert_eq!(instruction("jne    10e7a3 <f+0x103>").jump_target(), Some(0x10e7a3));
    assert_eq!(instruction("jne\t0x10e7a3 <f+0x103>").jump_target(), Some(0x10e7a3));
}

/// Builds a store-then-full site as the compiler emits it (GNU objdump,
/// Intel syntax), with the given strong and weak instructions.
fn store_then_full_site(strong_instruction: &str, weak_instruction: &str) -> Function {
    let lines = [
        (0x10, "movzx  esi,BYTE PTR [rdi+0x6f6]"),
        (0x17, "inc    QWORD PTR [rdi+rsi*8+0x6e0]"),
        (0x1f, "cmp    esi,0x1"),
        (0x22, "jne    30 <f+0x30>"),
        (0x24, "mov    WORD PTR [rdx],cx"),
        (0x27, strong_instruction),
        (0x2a, "jmp    40 <f+0x40>"),
        (0x30, weak_instruction),
        (0x40, "ret"),
    ];
    Function {
        name: "virtio_net::VirtioNet<R,D>::enable_interrupts".to_string(),
        instructions: lines.iter().map(|&(address, text)| Instruction { address, text: normalise(text) }).collect(),
    }
}

#[test]
fn analysis_tells_the_two_paths_apart() {
    let site = store_then_full_site("mfence", "xchg   WORD PTR [rdx],cx");
    let analysis = Analysis::new(&site);
    assert_eq!(analysis.block_side(analysis.block_start(5), 0), Ok(Side::Strong));
    assert_eq!(analysis.block_side(analysis.block_start(7), 0), Ok(Side::Weak));
    // The join after both paths is entered from both modes.
    assert!(analysis.block_side(analysis.block_start(8), 0).is_err());

    // Swapped instructions land on the wrong paths, which the test reports.
    let swapped = store_then_full_site("xchg   WORD PTR [rdx],cx", "mfence");
    let analysis = Analysis::new(&swapped);
    assert!(swapped.instructions[7].fence().is_some());
    assert_eq!(analysis.block_side(analysis.block_start(7), 0), Ok(Side::Weak));
}

/// Barrier executions of each kind in each mode.
fn kind_counts(stats: &GuestStats) -> Vec<(BarrierKind, Mode, u64)> {
    let mut counts = Vec::new();
    for kind in BarrierKind::ALL {
        for mode in Mode::ALL {
            counts.push((kind, mode, stats.barriers_of_kind(kind, mode)));
        }
    }
    counts
}

fn stats(console: &mut tests::console::ConsoleSocket) -> GuestStats {
    let output = console.command("stats", COMMAND_TIMEOUT).expect("stats answers");
    GuestStats::parse(&output).unwrap_or_else(|error| panic!("{error}:\n{output}"))
}

/// Checks that from `before` to `after` every kind moved in `selected` and
/// none moved in the other mode.
fn check_only_selected_moved(before: &GuestStats, after: &GuestStats, selected: Mode) {
    for ((kind, mode, count_before), (_, _, count_after)) in kind_counts(before).into_iter().zip(kind_counts(after)) {
        let moved = count_after - count_before;
        if mode == selected {
            assert!(moved > 0, "{} barriers in {mode} mode did not move while {selected} was selected", kind.name());
        } else {
            assert_eq!(moved, 0, "{} barriers in {mode} mode moved while {selected} was selected", kind.name());
        }
    }
}

#[test]
fn console_counters_follow_selected_mode() {
    let mut guest = Guest::boot_to_listening(GuestOptions {
        console_socket: true,
        append: "barriers=weak".into(),
        ..GuestOptions::default()
    });
    let mut console = guest.console(COMMAND_TIMEOUT).expect("console socket accepts");

    let booted = stats(&mut console);
    check_tcp_bulk(&mut guest, 64 * 1024);
    let weak = stats(&mut console);
    check_only_selected_moved(&booted, &weak, Mode::Weak);

    let answer = console.command("barriers strong", COMMAND_TIMEOUT).expect("barriers answers");
    assert!(answer.contains("barriers receive=strong transmit=strong"), "{answer}");
    let switched = stats(&mut console);
    check_tcp_bulk(&mut guest, 64 * 1024);
    let strong = stats(&mut console);
    check_only_selected_moved(&switched, &strong, Mode::Strong);

    console.command("barriers weak", COMMAND_TIMEOUT).expect("barriers answers");
    let switched_back = stats(&mut console);
    check_tcp_bulk(&mut guest, 64 * 1024);
    let weak_again = stats(&mut console);
    check_only_selected_moved(&switched_back, &weak_again, Mode::Weak);
}
