/// mimalloc, as in the `platepool` binary: the embedded mode runs the engine in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(platepool_loadtest::cli::main());
}
