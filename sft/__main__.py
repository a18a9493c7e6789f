from sft.cli import main

raise SystemExit(main())
