// taskwal: the command-line tool for a taskwal data directory. Everything
// but the terminal checks lives in tools/taskwal_cli.h; run
// `taskwal --help` for the commands.
#include <unistd.h>

#include <iostream>

#include "tools/taskwal_cli.h"

int main(int argc, char** argv) {
  taskwal::tools::CliOptions options;
  options.err_is_terminal = ::isatty(STDERR_FILENO) == 1;
  options.out_is_terminal = ::isatty(STDOUT_FILENO) == 1;
  const int code =
      taskwal::tools::RunCli(argc, argv, std::cout, std::cerr, options);
  std::cout.flush();
  return code;
}
