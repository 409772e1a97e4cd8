from action_llama.agent.entry import main

raise SystemExit(main())
