fn main() {
    std::process::exit(platepool_loadtest::cli::main());
}
