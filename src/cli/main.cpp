#include "cli/command.h"

int main(int argc, char** argv) { return louiskv::cli::run_cli(argc, argv); }
