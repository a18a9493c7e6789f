from data_recipes.cli import main

raise SystemExit(main())
