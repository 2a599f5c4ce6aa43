// The flow model's parts of hook_main.cpp (ml4ep.fastsim.hook): each snippet runs from its //@@ line to the
// next; FLOW_OPTS continues a line of hook_main.cpp (its last newline is dropped).
//@@ FLOW_DECL
  std::string post_weights = "@POST@.bin", sampler;
  int steps = 0;
//@@ FLOW_OPTS
 ||
                             a == "--post-weights" || a == "--steps" || a == "--sampler"
//@@ FLOW_PARSE
    } else if (a == "--post-weights") {
      post_weights = argv[++i];
    } else if (a == "--steps") {
      steps = std::atoi(argv[++i]);
      if (steps <= 0) {
        std::fprintf(stderr, "--steps: not a positive integer: %s\n", argv[i]);
        return 2;
      }
    } else if (a == "--sampler") {
      sampler = argv[++i];
//@@ FLOW_SET
    if (steps > 0 || !sampler.empty()) {
      gen.set_sampler(sampler.empty() ? gen.sampler() : sampler, steps > 0 ? steps : gen.steps());
    }
